"""The defaults of the stream commands, one place: SRe2L's relabel settings (SRe2L's ``relabel.sh`` and
``train/README.md``; ``docs/upstream-formats.md``), which ``ladd relabel`` and ``ladd convert sre2l
--relabel`` take as theirs, and ``--check-teacher``'s own."""

#: ``--fkd-seed``: the seed of the sampler SRe2L's relabel and training scripts replay
SRE2L_SEED = 42
#: ``--input-size``: the side every crop is resized to
SRE2L_CROP_SIDE = 224
#: the relabel run's batch size
SRE2L_BATCH_SIZE = 1024
#: the epochs SRe2L's students train (one relabel epoch each)
SRE2L_EPOCHS = 300
#: ``RandomResizedCrop``'s scale range in SRe2L's relabel script
SRE2L_SCALE = (0.08, 1.0)
#: records ``convert sre2l --check-teacher`` recomputes by default
CHECK_SLOTS = 8
