@echo off
rem Trifecta on Windows, display-only by default (the same "manage.py run" as everywhere).
rem For auto-execute mode (paper trades only):  set AUTO_EXECUTE=true  then run this file.
rem Needs Python 3.11+ ("py" launcher) and a Redis server: set REDIS_URL, e.g. Memurai or Redis in WSL.
setlocal
cd /d "%~dp0"
if not defined AUTO_EXECUTE set AUTO_EXECUTE=false
if not defined REDIS_URL (
  echo REDIS_URL is not set: start Memurai or Redis in WSL and set REDIS_URL=redis://127.0.0.1:6379/0
  exit /b 1
)
if not exist .venv\Scripts\python.exe py -3 -m venv .venv || exit /b 1
.venv\Scripts\python -m pip install --disable-pip-version-check -q -r requirements.txt || exit /b 1
.venv\Scripts\python manage.py run %*
