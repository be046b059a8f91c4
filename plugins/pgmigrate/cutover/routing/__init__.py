"""Where clients connect, and how the cutover moves them: PgBouncer in front of the database.

- `routes`  - the routes file PgBouncer includes into `[databases]` (strict names, atomic rewrite, lock);
- `admin`   - its admin console: one connection per command, or held through a pause;
- `switch_contract` - the `RouteSwitch` interface the cutover calls, its errors, the name and route checks;
- `switch`  - `PgBouncerRouteSwitch`: pause, resume, point a database at a server, who is connected;
- `fleet`   - `ClientRouting`: every PgBouncer of a deployment, paused, switched and resumed as one.
"""
