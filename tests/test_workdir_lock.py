"""One training run per workdir (innjax/workdir_lock.py).

The lock's own behaviour is checked in this process (a second `flock` on a separate
open file conflicts within one process too, which stands in for a second run). The
command-line behaviour is checked with real processes: a second `python main.py`
on a workdir that is training exits 2 naming the first, and after a SIGKILL of the
first the same command resumes at once. A last test joins two processes with
`jax.distributed`, where only process 0 locks and both hosts stop together.
"""

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from absl import logging
import pytest

from configs import tiny
from innjax import cli, workdir_lock
import soak_harness

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_held_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
  lock = workdir_lock.acquire(str(tmp_path), command="python main.py --workdir=x")
  try:
    record = json.loads((tmp_path / workdir_lock.LOCK_NAME).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert record["command"] == "python main.py --workdir=x"
    time.strptime(record["started"], "%Y-%m-%d %H:%M:%S %Z")  # local time, zone named
    with pytest.raises(workdir_lock.WorkdirBusyError) as info:
      workdir_lock.acquire(str(tmp_path))
    message = str(info.value)
    assert "\n" not in message
    assert (
      f"pid {os.getpid()} on host {socket.gethostname()}, started "
      f"{record['started']}: python main.py --workdir=x" in message
    )
    assert "wait for that one to finish" in message and "another --workdir" in message
  finally:
    lock.release()
  # Released: the file is gone and the next run takes the lock.
  assert not (tmp_path / workdir_lock.LOCK_NAME).exists()
  workdir_lock.acquire(str(tmp_path)).release()


def test_a_killed_runs_lock_file_does_not_block(tmp_path):
  # What a SIGKILLed run leaves: its record, with nobody holding the lock.
  (tmp_path / workdir_lock.LOCK_NAME).write_text(
    json.dumps({"pid": 999999, "host": "gone", "started": "then", "command": "old"})
  )
  with workdir_lock.hold(str(tmp_path)) as lock:
    assert lock.locked
    assert workdir_lock.read_holder(str(tmp_path))["pid"] == os.getpid()


def test_a_file_system_without_locks_warns_and_goes_on(tmp_path, monkeypatch):
  def no_flock(fd, operation):
    raise OSError(errno.ENOLCK, "No locks available")

  monkeypatch.setattr(workdir_lock.fcntl, "flock", no_flock)
  warnings = []
  monkeypatch.setattr(logging, "warning", lambda msg, *a: warnings.append(msg % a))
  with workdir_lock.hold(str(tmp_path)) as lock:
    assert not lock.locked
  assert len(warnings) == 1 and "does not support file locks" in warnings[0]
  assert "No locks available" in warnings[0] and "start only one" in warnings[0]


def test_a_bucket_workdir_warns_once_and_goes_on(monkeypatch):
  warnings = []
  monkeypatch.setattr(logging, "warning", lambda msg, *a: warnings.append(msg % a))
  with workdir_lock.hold("gs://bucket/run") as lock:  # touches no storage
    assert not lock.locked
  assert warnings == [
    "Workdir gs://bucket/run is on remote storage, which has no file "
    "locks; innjax cannot detect a second training run on this "
    "workdir there, so start only one."
  ]


def test_hosts_follow_process_0(tmp_path):
  """`agree` carries process 0's outcome to every host: all go on, or all stop."""
  seen = []

  def agree(ok):  # stands in for sharding.from_process_0 on a host that is not 0
    seen.append(ok)
    return False

  with pytest.raises(workdir_lock.WorkdirBusyError, match="process 0 of this run"):
    with workdir_lock.hold(str(tmp_path), main_process=False, agree=agree):
      pass
  assert seen == [True]  # a host other than 0 never locks, so it reports no failure
  assert not (tmp_path / workdir_lock.LOCK_NAME).exists()
  with workdir_lock.hold(
    str(tmp_path), main_process=False, agree=lambda ok: True
  ) as lock:
    assert lock is None


def test_training_in_process_on_a_locked_workdir_is_refused(tmp_path, capsys):
  workdir = tmp_path / "run"
  workdir.mkdir()
  with workdir_lock.hold(str(workdir)):
    rc = cli.run("train", tiny.get_config(), str(workdir))
  err = capsys.readouterr().err
  assert rc == 2 and "Traceback" not in err
  assert re.search(
    r"innjax: error: Workdir '.*' is in use by another training run "
    rf"\(pid {os.getpid()} on host ",
    err,
  ), err
  assert os.listdir(workdir) == []  # nothing written: no checkpoints, no events


def test_two_processes_one_workdir_then_sigkill_and_resume(tmp_path):
  workdir = str(tmp_path / "run")
  # max_to_keep=0 keeps every step, so no step disappears under the check below.
  command = soak_harness.train_command(
    workdir, {"num_stages": 300, "checkpoint.max_to_keep": 0}
  )
  env = soak_harness.subprocess_env(soak_harness.CACHE_DIR)
  first = soak_harness.Process(command, env)
  try:
    assert first.wait_for(re.compile(r"stage 1/300"), time.monotonic() + 300), (
      first.text()
    )
    second = subprocess.run(
      command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    out = second.stdout + second.stderr
    assert second.returncode == 2 and "Traceback" not in out, out
    assert re.search(
      rf"innjax: error: Workdir '{re.escape(workdir)}' is in use by "
      rf"another training run \(pid {first.popen.pid} on host "
      rf"{re.escape(socket.gethostname())}, started [^)]*main\.py",
      out,
    ), out
    assert first.popen.poll() is None  # the first run was not disturbed
    os.kill(first.popen.pid, signal.SIGKILL)
    first.wait(timeout=60)
  finally:
    first.popen.kill()
  committed = soak_harness.committed_steps(workdir)[-1]
  # At once: the dead run's lock must not block the resume.
  resumed = soak_harness.Process(command, env)
  try:
    resumed.wait_for(
      re.compile(r"Resuming .* after stage|innjax: error"), time.monotonic() + 300
    )
    assert soak_harness.resumed_from(resumed.text()) == committed, resumed.text()
    resumed.popen.send_signal(signal.SIGTERM)
    assert resumed.wait(timeout=120) == 0, resumed.text()
  finally:
    resumed.popen.kill()
  assert not os.path.exists(os.path.join(workdir, workdir_lock.LOCK_NAME))


_TWO_HOSTS = """
import json, sys
from innjax import sharding, workdir_lock
process_id, port, workdir, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
sharding.initialize_distributed(f"localhost:{port}", 2, process_id)
report = {}
other = workdir_lock.acquire(workdir) if process_id == 0 else None  # another run
try:
  with workdir_lock.hold(workdir, sharding.is_main_process(), sharding.from_process_0):
    report["busy"] = "went on"
except workdir_lock.WorkdirBusyError as err:
  report["busy"] = str(err)
if other is not None:
  other.release()
with workdir_lock.hold(workdir, sharding.is_main_process(),
                       sharding.from_process_0) as lock:
  report["free"] = None if lock is None else lock.locked
with open(out, "w") as f:
  json.dump(report, f)
"""


def test_two_hosts_take_one_lock_and_stop_together(tmp_path):
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  env = dict(
    soak_harness.subprocess_env(soak_harness.CACHE_DIR),
    JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
    PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]),
  )
  workers = [
    subprocess.Popen(
      [
        sys.executable,
        "-c",
        _TWO_HOSTS,
        str(i),
        str(port),
        str(tmp_path),
        str(tmp_path / f"host{i}.json"),
      ],
      cwd=REPO,
      env=env,
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in (0, 1)
  ]
  try:
    errors = [w.communicate(timeout=300)[1] for w in workers]
  finally:
    for w in workers:
      w.kill()
  for i, w in enumerate(workers):
    assert w.returncode == 0, errors[i][-4000:]
  host0, host1 = (json.loads((tmp_path / f"host{i}.json").read_text()) for i in (0, 1))
  # Locked by another run: process 0 is refused, and process 1 stops with it.
  assert "is in use by another training run" in host0["busy"]
  assert host1["busy"].startswith("process 0 of this run could not lock the workdir")
  # Free: process 0 holds the one lock, process 1 holds none and goes on.
  assert host0["free"] is True and host1["free"] is None
  assert not (tmp_path / workdir_lock.LOCK_NAME).exists()
