"""The PIG bundle's MONAI Label app: tasks over the bundle's own configs and code (``bundle/``)."""
