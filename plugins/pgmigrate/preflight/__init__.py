"""Preflight, the first task of `pg_migration`: reads facts from the source and target (`checks.run_preflight`),
judges them (`rules` and `table_rules`, pure: facts in, a result with the fixing SQL out) and the roles' privileges
(`privileges`, on the facts `role_facts` reads), and collects the results (`report`). Nothing is created
before it passes.
"""
