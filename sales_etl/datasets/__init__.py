"""The dataset specs (one TOML file each, shipped here or in DATASETS_DIR) and their reader
(reader), which validates every identifier and rule. May import core, stages and config."""
