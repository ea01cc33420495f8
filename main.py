"""innjax command line: train an INNg model, or sample from a trained one.

  python main.py                                   # embedded default, ./workdir/default
  python main.py --config=configs/svhn.py --workdir=runs/svhn
  python main.py --config=configs/svhn.py --workdir=runs/svhn --mode=sample
  python main.py --config=configs/tiny.py --config.num_stages=5 --workdir=/tmp/t
  python main.py --config=configs/texture.py --config.data.image=tex.jpg --workdir=runs/tex
  python main.py --config=configs/texture.py --config.data.image=tex.jpg \
      --workdir=runs/tex --mode=sample --config.sample.size=512,512
  python main.py --config=configs/tiny.py --config.mesh.data=0 --workdir=/tmp/t
  python main.py --config=configs/tiny.py --config.mesh.data=0 --distributed \
      --workdir=/shared/t           # the same command on every host
  python main.py --config=configs/svhn.py --help_config   # every config field
  python main.py --config=configs/svhn.py --workdir=runs/svhn --mode=export

Every config field, with the value it would take and its meaning, is listed by
`--help_config` (add --config=FILE and overrides to see that run's values).

The console shows innjax's own lines (a line per stage, progress within a stage);
--verbosity=1 adds the libraries' INFO lines (JAX, Orbax, TensorFlow) and debug
lines, --verbosity=-1 shows warnings and errors only.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from innjax import cli
from innjax import config_checks

_DEFAULT_CONFIG = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), "configs", "default.py"
)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
  "config",
  _DEFAULT_CONFIG,
  "Experiment config file (a Python file with get_config()); override any field "
  "with --config.FIELD=VALUE, e.g. --config.num_stages=5.",
  lock_config=True,
)
flags.DEFINE_string(
  "workdir",
  "workdir/default",
  "Folder for checkpoints, TensorBoard events, PNG grids and samples. "
  "Running again on the same folder resumes. One training run at a "
  "time: a second one on a workdir in use exits with code 2 "
  "(sample, style and evaluate may run beside it).",
)
flags.DEFINE_string(
  "output_dir",
  "",
  "--mode=sample, style, evaluate and export: write the files into "
  "this folder instead of --workdir/samples, --workdir/style and "
  "--workdir (e.g. "
  "when the workdir is read-only). Files are never replaced: a name "
  "in use gets -2, -3, ... before its extension.",
)
flags.DEFINE_enum(
  "mode",
  "train",
  cli.MODES,
  "train: train (or resume) a model; "
  "sample: generate images from the trained cascade in --workdir, "
  "written to --workdir/samples/samples_stageNNN_nN_seedS[_HxW]"
  ".{png,npz}; "
  "evaluate: L2-SVM feature protocol (paper 4.5) and sample metrics, "
  "written to --workdir/evaluation.{json,md}; "
  "style: render --config.style.content in the style a patch-head "
  "model in --workdir learned (paper 4.2); "
  "export: write the trained cascade, its mask and config as one "
  "file, --workdir/model_stageNNN.npz, that innjax.load(path) reads "
  "without the workdir or configs.",
)
flags.DEFINE_bool(
  "distributed",
  False,
  "Several hosts: call jax.distributed.initialize() first. Run the same "
  "command on every host; on Cloud TPU, Slurm and Open MPI JAX detects "
  "the rest, elsewhere also give --coordinator_address, "
  "--num_processes and --process_id. Use with --config.mesh.data=0.",
)
flags.DEFINE_string(
  "coordinator_address",
  "",
  "--distributed: host:port of process 0, the same on every host.",
)
flags.DEFINE_integer("num_processes", 0, "--distributed: number of processes (hosts).")
flags.DEFINE_integer(
  "process_id", -1, "--distributed: this process's index, 0 to num_processes - 1."
)
flags.DEFINE_bool(
  "help_config",
  False,
  "List every config field with its value (from --config and its "
  "overrides) and meaning (from configs/default.py), then exit.",
)

# absl's help flags print the usage and exit with status 1; asking for help is not
# an error, so parse_flags turns that into 0.
_HELP_FLAGS = ("--help", "-help", "-?", "--helpshort", "--helpfull", "--helpxml")


def main(argv):
  if len(argv) > 1:
    print(
      f"innjax: error: unexpected arguments: {' '.join(argv[1:])} (every option "
      "is a flag such as --workdir=DIR or --config.num_stages=5). See `python "
      "main.py --help`.",
      file=sys.stderr,
    )
    sys.exit(2)
  if FLAGS.help_config:
    from innjax import config_help  # pylint: disable=g-import-not-at-top

    print(config_help.describe(FLAGS.config))
    sys.exit(0)
  # Before JAX starts: the measured XLA:CPU flags (never overriding XLA_FLAGS) and
  # the persistent compilation cache in ~/.cache/innjax/jax (docs/performance.md).
  from innjax import runtime  # pylint: disable=g-import-not-at-top

  runtime.configure()
  if not FLAGS["verbosity"].present:  # the stage lines; libraries stay quiet
    logging.set_verbosity(logging.INFO)
  if FLAGS.distributed:
    # Imported here so `main.py --help` answers without loading JAX.
    from innjax import sharding  # pylint: disable=g-import-not-at-top

    sharding.initialize_distributed(
      FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
    )
    if not sharding.is_main_process():  # one log for the whole run: process 0's
      logging.set_verbosity(logging.WARNING)
  sys.exit(
    cli.run(FLAGS.mode, FLAGS.config, FLAGS.workdir, output_dir=FLAGS.output_dir or None)
  )


def parse_flags(argv):
  """Parses flags; a bad --config or --config.FIELD becomes a message, not a traceback."""
  argv = [argv[0]] + ["--help" if arg == "-h" else arg for arg in argv[1:]]
  argv, notes = config_checks.upgrade_overrides(argv)
  for note in notes:
    print(f"innjax: note: {note}", file=sys.stderr)
  if notes:  # ml_collections reads the overrides from sys.argv, not from argv
    sys.argv = argv
  try:
    return FLAGS(argv)
  except SystemExit as done:
    if done.code == 1 and any(arg in _HELP_FLAGS for arg in argv[1:]):
      sys.exit(0)
    raise
  except flags.Error as err:
    print(f"innjax: error: {err}\nSee `python main.py --help`.", file=sys.stderr)
    sys.exit(2)
  except (AttributeError, KeyError, ValueError, TypeError) as err:
    print(
      f"innjax: error: bad --config override or config file: {err}. Config "
      "fields are listed in configs/default.py; overrides look like "
      "--config.train.learning_rate=0.001.",
      file=sys.stderr,
    )
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
