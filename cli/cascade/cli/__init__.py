"""The top floor: the ``cascade`` command and the local stack it runs."""
