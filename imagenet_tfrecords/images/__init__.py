"""One image's bytes to the JPEG a record stores: format sniffing, the bad-image rule, decoding, resizing."""
