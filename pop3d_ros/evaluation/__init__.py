"""Evaluation protocols and metrics, ROS-free and independent of training: POP-3D's LiDAR
protocol (`protocol`), the Occ3D-style camera-visible protocol (`occ3d`), retrieval and
grounding (`retrieval`), confusion metrics (`metrics`), evaluation labels and volumes
(`labels`, `volume`, `conventions`), zero-shot classification from text (`zeroshot`), and the
`pop3d eval` command (`cli`). The demo and the benchmarks use it without importing training."""
