"""The mount server: one FUSE mount with rw/ and ro/ views of every ready folder."""
