"""The plugins that ship with vfd, registered through the ``vfd`` entry-point group like any
other."""
