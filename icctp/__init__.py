"""ICCTP and baseline visual-token selection as batched, pure-torch functions (no Ray, no IO)."""
