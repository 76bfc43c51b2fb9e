"""The digital twin: a decoder-only transformer over each participant's multimodal timeline."""
