"""2D teachers whose dense features the language head distils: MaskCLIP from an open_clip
ViT (`maskclip`), its on-disk feature cache (`cache`, `pop3d teacher-cache` = `cli`), reading
features at projected points (`features`), and choosing a run's teacher (`select`). The
synthetic world's own teacher is `data/synthetic_teacher.py`."""
