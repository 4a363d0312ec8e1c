"""Model-level pieces shared by training and evaluation: the one seeded KV-cache decoder (:mod:`.decoding`)."""
