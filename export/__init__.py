"""maskwatch export: datasets -> training -> evaluation -> conversion -> model bundle (workstation side)."""
