"""Storage hosts, backing layout, folder names and quota arithmetic (fuse and daemon)."""
