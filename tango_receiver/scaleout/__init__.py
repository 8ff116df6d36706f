"""Scale-out: one detector relayed to N receivers (``split``), their part files joined into one
master file afterwards (``stitch``); ``classify`` tells control messages from images."""
