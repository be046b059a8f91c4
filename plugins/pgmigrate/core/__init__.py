"""What every phase shares: where the databases are (`endpoints`), the names a migration gives everything it
creates (`naming`), its validated parameters (`params`), the tables it moves (`catalog`, `migration_tables`),
what each column type can travel by (`column_types`), and secret masking (`secret_masking`).

Used by every DAG; imports nothing else of the package.
"""
