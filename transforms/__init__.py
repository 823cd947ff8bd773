"""What is done to records: small frozen transforms, each beside its inverse."""
