"""What a compute session is, apart from the daemon that runs it: its status machine, and
the rules for the folders it mounts."""
