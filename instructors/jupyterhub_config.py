# labkit's class server as a JupyterHub managed service, at <hub>/services/labkit/.
#
# Copy this into your jupyterhub_config.py, or load it from there: load_subconfig("this file").
# It adds to services, roles and groups set before it (if you define the "user" role yourself, add
# the access scope below to yours instead).
# The hub starts the class server itself (`labkit serve --classroom --hub-service`), restarts it if
# it stops, and routes <hub>/services/labkit/ to it; the students' hub login is their class identity,
# so nobody types a token. instructors/jupyterhub.md explains each line; tests/test_jupyterhub.py
# runs this very file against a real JupyterHub.
#
# Settings from the environment of the hub (defaults in brackets):
#   LABKIT_SERVICE_PORT    the loopback port the class server listens on [8765]
#   LABKIT_STATE_DIR       the class server's SQLite file and instructor token [/srv/labkit]
#   LABKIT_INSTRUCTORS     hub users who are instructors besides the hub's admins, comma-separated []
#   LABKIT_HUB_PUBLIC_URL  the hub's public URL, if not set elsewhere (https://hub.example.edu)
import os
import sys

c = get_config()  # noqa: F821 - defined by JupyterHub when it loads this file

LABKIT_PORT = int(os.environ.get("LABKIT_SERVICE_PORT", "8765"))
LABKIT_STATE = os.environ.get("LABKIT_STATE_DIR", "/srv/labkit")
LABKIT_INSTRUCTORS = [u.strip() for u in os.environ.get("LABKIT_INSTRUCTORS", "").split(",") if u.strip()]
ACCESS = "access:services!service=labkit"

os.makedirs(LABKIT_STATE, mode=0o700, exist_ok=True)

# 1. The class server, started and stopped by the hub. Python is the hub's own (labkit installed in
#    the hub's environment); the hub passes the service its address, prefix and API token.
c.JupyterHub.services.append(
    {
        "name": "labkit",
        "url": f"http://127.0.0.1:{LABKIT_PORT}",
        "command": [sys.executable, "-m", "labkit", "serve", "--classroom", "--hub-service",
                    "--db", os.path.join(LABKIT_STATE, "class.db"),
                    "--instructor-token-file", os.path.join(LABKIT_STATE, "instructor-token")],
        "cwd": LABKIT_STATE,
        "oauth_no_confirm": True,  # a browser widget logs in to the class server without a page
        "display": True,  # listed in the hub's Services menu
    }
)

# 2. Who may use it: every hub user (the default "user" role plus access to this one service).
c.JupyterHub.load_roles.append({"name": "user", "scopes": ["self", ACCESS]})

# 3. The instructors: the hub's admins, and the members of this group.
if LABKIT_INSTRUCTORS:
    c.JupyterHub.load_groups.update({"labkit-instructors": {"users": LABKIT_INSTRUCTORS}})

# 4. The token of each student's server (JUPYTERHUB_API_TOKEN, which the kernel inherits) may reach
#    the class server, so lk.join() in a notebook needs no token. The first two are the hub's default.
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", ACCESS]

# 5. The hub's public URL tells lk.join() (and the class server's Host/Origin check) where the hub is.
if os.environ.get("LABKIT_HUB_PUBLIC_URL"):
    c.JupyterHub.public_url = os.environ["LABKIT_HUB_PUBLIC_URL"]
