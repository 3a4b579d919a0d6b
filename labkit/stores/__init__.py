"""What the lab keeps on disk: SQLite stores (notes, idempotency answers) and their safe schema set-up."""
