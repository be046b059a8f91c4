"""What every phase shares: where the databases are (`endpoints`), the names a migration gives everything it
creates (`naming`), its validated parameters (`params`), the tables it moves (`catalog`, `migration_tables`),
what each column type can travel by (`column_types`), secret masking (`secret_masking`), and where
artifacts go, local or object storage (`artifacts`).

Used by every DAG; imports nothing else of the package.
"""
