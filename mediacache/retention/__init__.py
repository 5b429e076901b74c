"""How long objects live: the bucket lifecycle rule that expires them."""
