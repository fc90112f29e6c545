"""Text side: text encoders (open_clip or a synthetic text space) behind one interface."""
