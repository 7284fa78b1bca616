# Read by `flask` commands (python-dotenv). Public settings only: secrets go
# in .env (copy .env.example), which git ignores.
FLASK_APP={{ cookiecutter.project_slug }}
FLASK_DEBUG=1
