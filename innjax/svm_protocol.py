"""The paper's semi-supervised L2-SVM protocol on feature arrays (section 4.5).

After DCGAN (Radford et al. 2016): features of a labelled training set feed an L2-SVM
(linear SVM, squared hinge loss) trained on `num_labelled` labelled examples (paper:
1000); C is chosen on a `val_size`-example validation split held out from the labelled
training set (paper: 10000); the test error is averaged over `num_draws` random
labelled draws from the rest (paper: 100). `svm_protocol` takes plain (N, D) arrays and
knows nothing of networks or configs; `innjax.evaluate` runs it on a trained
classifier's features and on two baselines.

Cost: the SVMs dominate. Each is trained on an exact n-dimensional reparametrisation of
its D-dimensional problem when D >= n (`_prepare_draw`): 1-17 s per SVM for 1000 x
14336 on a shared 2-core CPU, depending on C (liblinear needs more passes for larger
C). On a CPU shared with other work, multi-threaded OpenBLAS slowed the small LAPACK
calls here 10-30x; `OPENBLAS_NUM_THREADS=1` avoids that.
"""

from __future__ import annotations

import time
import warnings
from typing import NamedTuple, Sequence

from absl import logging
import numpy as np
import scipy.linalg

from innjax import console
from innjax import errors

# Log-spaced grid for the SVM's C. Features are standardised first, so the useful range
# does not depend on the network's activation scale; with ~10^4 dimensions and 10^3
# examples the best C is usually small (strong regularisation).
DEFAULT_CS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)

# Rows per chunk when scoring test/validation features: bounds the float64 copy made
# for the matrix product (4096 x 14336 x 8 B = 470 MB at most).
_SCORE_CHUNK = 4096


def _check_features(feats, labels, name):
  feats = np.asarray(feats) if not isinstance(feats, np.ndarray) else feats
  if labels is None:
    raise ValueError(
      f"{name}_labels is None: the SVM protocol needs a labelled dataset (e.g. "
      "tfds svhn_cropped/cifar10, or an .npz with a 'y' array)."
    )
  labels = np.asarray(labels)
  if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
    raise ValueError(
      f"{name}_feats must be a non-empty (N, D) array, got shape {feats.shape}."
    )
  if labels.ndim != 1 or labels.shape[0] != feats.shape[0]:
    raise ValueError(
      f"{name}_labels must have shape ({feats.shape[0]},) to match "
      f"{name}_feats, got {labels.shape}."
    )
  return feats, labels


class _Draw(NamedTuple):
  """One labelled draw, standardised and put in the form the SVM is trained on."""

  mean: np.ndarray  # (D,) standardisation fitted on the draw
  scale: np.ndarray  # (D,)
  design: np.ndarray  # (n, r) the matrix LinearSVC sees
  augmented: np.ndarray | None  # (n, D + 1) standardised draw with a ones column
  factor: tuple | None  # how `design` was made from `augmented` (see _prepare_draw)


def _standardiser(x: np.ndarray):
  """Per-dimension mean and scale of the labelled draw.

  Fitted on the draw alone: in the semi-supervised setting the labelled examples are
  all the SVM may be tuned on. Constant dimensions (e.g. dead ReLUs) get scale 1
  instead of a division by zero.
  """
  mean = x.mean(axis=0)
  scale = x.std(axis=0)
  scale[scale <= 1e-12 * max(float(scale.max()), 1e-30)] = 1.0
  return mean, scale


def _prepare_draw(x: np.ndarray) -> _Draw:
  """Standardises a draw and, when D >= n, reduces it exactly to n dimensions.

  liblinear's L2-SVM with an intercept is the problem
    min_w 1/2 |w|^2 + C sum_i max(0, 1 - y_i w.x~_i)^2,   x~_i = [x_i, 1]
  (the intercept is the weight of a constant feature and is regularised too). Its
  solution lies in the span of the x~_i (a component orthogonal to them adds to |w|
  and changes no margin), so with a factor K = X~ X~^T = L L^T (n x n) and w = X~^T
  L^-T b, the problem in b on the rows of L is the same problem: same margins, same
  norm. Training on 1000 x 1000 instead of 1000 x 14336 made each SVM ~15x faster
  here (liblinear's coordinate descent touches every feature each pass), and the
  weights agree with a direct fit to 1e-8 (tests/test_svm_protocol.py).
  """
  x = np.asarray(x, np.float64)
  if not np.all(np.isfinite(x)):
    raise ValueError("train_feats contain NaN or inf in the labelled draw.")
  mean, scale = _standardiser(x)
  xs = (x - mean) / scale
  n, d = xs.shape
  if d + 1 <= n:  # fewer features than examples: nothing to gain, fit directly
    return _Draw(mean, scale, xs, None, None)
  augmented = np.concatenate([xs, np.ones((n, 1))], axis=1)
  gram = augmented @ augmented.T
  try:
    chol = np.linalg.cholesky(gram)
    return _Draw(mean, scale, chol, augmented, ("cholesky", chol))
  except np.linalg.LinAlgError:
    # Rank-deficient draw (e.g. repeated images): keep the non-null eigendirections.
    evals, evecs = np.linalg.eigh(gram)
    keep = evals > evals.max() * n * np.finfo(np.float64).eps
    root = np.sqrt(evals[keep])
    return _Draw(
      mean, scale, evecs[:, keep] * root, augmented, ("eigh", evecs[:, keep], root)
    )


def _fit_svm(draw: _Draw, y: np.ndarray, C: float, max_iter: int, tol: float, seed: int):
  """Trains one L2-SVM (one-vs-rest) on a prepared draw.

  Returns:
    ((coef (k, D), intercept (k,), classes) on standardised features, converged).
  """
  from sklearn.exceptions import ConvergenceWarning  # pylint: disable=g-import-not-at-top
  from sklearn.svm import LinearSVC  # pylint: disable=g-import-not-at-top

  reduced = draw.factor is not None
  # Reduced (n x n): the dual (one variable per example) converged in ~60 passes for
  # every C tried, while the primal Newton solver slowed badly at large C on the
  # ill-conditioned factor. Direct (more examples than features): the primal, as the
  # scikit-learn documentation advises for n_samples > n_features.
  clf = LinearSVC(
    C=float(C),
    loss="squared_hinge",
    penalty="l2",
    dual=reduced,
    fit_intercept=not reduced,
    tol=tol,
    max_iter=max_iter,
    random_state=seed,
  )
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", ConvergenceWarning)
    clf.fit(draw.design, y)
  converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
  if not reduced:
    return (clf.coef_, clf.intercept_, clf.classes_), converged
  if draw.factor[0] == "cholesky":  # w = X~^T L^-T b
    a = scipy.linalg.solve_triangular(draw.factor[1], clf.coef_.T, trans="T", lower=True)
  else:  # design = U s: w = X~^T U s^-1 b
    a = draw.factor[1] @ (clf.coef_.T / draw.factor[2][:, None])
  w = (draw.augmented.T @ a).T  # (k, D + 1)
  return (w[:, :-1], w[:, -1], clf.classes_), converged


def _error_rate(
  model, mean, scale, feats: np.ndarray, labels: np.ndarray, name: str
) -> float:
  """Error rate of a linear model on raw features, standardised on the fly.

  The standardisation is folded into the model (w / scale, b - w . mean / scale), so
  the (possibly multi-GB) test matrix is never copied whole; rows are scored in
  chunks. Same decision rule as LinearSVC.predict.
  """
  coef, intercept, classes = model
  w = coef / scale
  b = intercept - w @ mean
  wrong = 0
  for start in range(0, feats.shape[0], _SCORE_CHUNK):
    scores = np.asarray(feats[start : start + _SCORE_CHUNK], np.float64) @ w.T + b
    if not np.all(np.isfinite(scores)):
      raise ValueError(f"{name} contain NaN or inf (rows {start}..).")
    if scores.shape[1] == 1:  # binary: one weight vector, positive means classes[1]
      pred = classes[(scores[:, 0] > 0).astype(int)]
    else:
      pred = classes[np.argmax(scores, axis=1)]
    wrong += int(np.sum(pred != labels[start : start + _SCORE_CHUNK]))
  return wrong / feats.shape[0]


def svm_protocol(
  train_feats,
  train_labels,
  test_feats,
  test_labels,
  *,
  num_labelled: int = 1000,
  val_size: int = 10000,
  num_draws: int = 100,
  Cs: Sequence[float] = DEFAULT_CS,
  seed: int = 0,
  select_draws: int = 3,
  max_iter: int = 2000,
  tol: float = 1e-4,
) -> dict:
  """The paper's semi-supervised L2-SVM protocol (section 4.5, after DCGAN).

  1. A random `val_size` examples of the labelled training set are held out for
     model selection; the rest is the pool labelled draws come from.
  2. C is chosen once: for each of `select_draws` random `num_labelled`-example draws
     from the pool, an SVM is trained for every C in `Cs` and scored on the validation
     split; the C with the lowest validation error averaged over those draws wins
     (ties go to the smaller, more regularised C). The paper does not say how many
     draws it selected with; averaging a few keeps one unlucky draw from deciding.
  3. For each of `num_draws` fresh random draws of `num_labelled` pool examples, an
     L2-SVM (scikit-learn `LinearSVC(loss='squared_hinge')`, one-vs-rest, intercept
     regularised as liblinear does) with the chosen C is trained and its test error
     recorded.
  Features are standardised with the mean and standard deviation of each labelled
  draw (not of the test or validation data). When there are more features than
  labelled examples (14336 vs 1000 in the paper), each SVM is trained on an exact
  n-dimensional reparametrisation of the same problem (see `_prepare_draw`) and its
  weights mapped back; the solution is the same, ~15x faster. All randomness comes
  from `seed`.

  Args:
    train_feats: (N, D) features of the labelled training set (a numpy array or
      memmap; only the rows drawn are read into float64).
    train_labels: (N,) class labels.
    test_feats: (M, D) features of the test set.
    test_labels: (M,) class labels.
    num_labelled: labelled examples per SVM (paper: 1000).
    val_size: held-out validation examples for choosing C (paper: 10000); may be 0
      only when `Cs` has a single value.
    num_draws: SVMs the test error is averaged over (paper: 100).
    Cs: candidate values of the SVM's C.
    seed: seeds the split, the draws and liblinear.
    select_draws: draws used to choose C.
    max_iter: liblinear iteration cap per SVM.
    tol: liblinear stopping tolerance.

  Returns:
    dict with test_error_mean, test_error_std (sample std over draws; 0 for one draw),
    test_errors (one per draw), C (chosen), C_at_grid_edge ("smallest" or "largest"
    when C ends the grid: a better one may lie beyond it), val_error (its validation
    error),
    val_errors (list of {C, error}), feature_dim, num_train, num_test, num_labelled,
    val_size, num_draws, select_draws, not_converged (SVMs that hit max_iter),
    seconds.

  Raises:
    ValueError: missing labels, inconsistent shapes, too few training examples for
      val_size + num_labelled, fewer than two classes in a draw, bad Cs or counts.
  """
  t0 = time.perf_counter()
  train_feats, train_labels = _check_features(train_feats, train_labels, "train")
  test_feats, test_labels = _check_features(test_feats, test_labels, "test")
  if train_feats.shape[1] != test_feats.shape[1]:
    raise ValueError(
      f"train_feats have {train_feats.shape[1]} dimensions but test_feats "
      f"have {test_feats.shape[1]}; extract both with the same function."
    )
  num_labelled, val_size = int(num_labelled), int(val_size)
  num_draws, select_draws = int(num_draws), int(select_draws)
  if num_labelled < 2:
    raise ValueError(f"num_labelled must be >= 2, got {num_labelled}.")
  if val_size < 0:
    raise ValueError(f"val_size must be >= 0, got {val_size}.")
  if num_draws < 1 or select_draws < 1:
    raise ValueError(
      f"num_draws and select_draws must be >= 1, got {num_draws} and {select_draws}."
    )
  Cs = tuple(float(c) for c in np.atleast_1d(np.asarray(Cs, dtype=float)))
  if not Cs or not all(np.isfinite(c) and c > 0 for c in Cs):
    raise ValueError(f"Cs must be a non-empty sequence of positive numbers, got {Cs}.")
  if val_size == 0 and len(Cs) > 1:
    raise ValueError(
      f"val_size=0 leaves no validation split to choose among {len(Cs)} "
      "values of C; give a single C or a positive val_size."
    )
  n = train_feats.shape[0]
  if n < val_size + num_labelled:
    raise ValueError(
      f"The labelled training set has {n} examples, but val_size ({val_size}) + "
      f"num_labelled ({num_labelled}) = {val_size + num_labelled} are needed; lower "
      "val_size or num_labelled (e.g. --config.evaluate.val_size=...)."
    )
  if np.unique(train_labels).size < 2:
    raise errors.DataError(
      "train_labels hold a single class; a classifier needs two or more."
    )

  # Independent streams, so changing num_draws does not change the split or the C
  # chosen, and changing select_draws does not change the test draws.
  split_ss, select_ss, draw_ss = np.random.SeedSequence(int(seed)).spawn(3)
  perm = np.random.default_rng(split_ss).permutation(n)
  val_idx, pool_idx = np.sort(perm[:val_size]), perm[val_size:]
  val_feats, val_labels = train_feats[val_idx], train_labels[val_idx]
  not_converged = 0

  def draw(rng):
    # Sorted indices read a memmap sequentially; the order does not affect the SVM
    # beyond liblinear's seeded shuffling.
    idx = np.sort(rng.choice(pool_idx, num_labelled, replace=False))
    y = train_labels[idx]
    if np.unique(y).size < 2:
      raise errors.DataError(
        f"A random draw of {num_labelled} labelled examples holds a single class; "
        "raise num_labelled."
      )
    return train_feats[idx], y

  def fit(prepared, y, C, i):
    nonlocal not_converged
    # liblinear shuffles its coordinates: seeded per SVM from the protocol's seed.
    svm_seed = int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0] >> 1)
    model, ok = _fit_svm(prepared, y, C, max_iter, tol, seed=svm_seed)
    not_converged += not ok
    return model

  if len(Cs) == 1:
    best_c, val_errors = Cs[0], {}
  else:
    select_rng = np.random.default_rng(select_ss)
    errs = {c: [] for c in Cs}
    with console.Progress(select_draws * len(Cs), "SVM: choosing C", "fit") as bar:
      for k in range(select_draws):
        x, y = draw(select_rng)
        prepared = _prepare_draw(x)  # shared by every C
        for c in Cs:
          model = fit(prepared, y, c, k)
          errs[c].append(
            _error_rate(
              model,
              prepared.mean,
              prepared.scale,
              val_feats,
              val_labels,
              "train_feats (validation rows)",
            )
          )
          bar.update()
    val_errors = {c: float(np.mean(errs[c])) for c in Cs}
    best_c = min(sorted(Cs), key=lambda c: val_errors[c])  # min is stable: smaller C
    logging.info(
      "SVM: C=%g chosen on %d validation examples (errors %s).",
      best_c,
      val_size,
      {f"{c:g}": round(e, 4) for c, e in val_errors.items()},
    )
  edge = grid_edge(Cs, best_c)  # None for a single C: nothing was chosen
  if edge:
    logging.warning(
      "SVM: the chosen C=%g is the %s value of the grid, so a better C may lie "
      "beyond it: add %s values to the grid (--config.evaluate.Cs).",
      best_c,
      edge,
      "smaller" if edge == "smallest" else "larger",
    )

  draw_rng = np.random.default_rng(draw_ss)
  test_errors = []
  with console.Progress(num_draws, "SVM: test draws", "draw") as bar:
    for d in range(num_draws):
      x, y = draw(draw_rng)
      prepared = _prepare_draw(x)
      model = fit(prepared, y, best_c, 1000 + d)
      test_errors.append(
        _error_rate(
          model, prepared.mean, prepared.scale, test_feats, test_labels, "test_feats"
        )
      )
      bar.update()
  test_errors = np.asarray(test_errors)
  return {
    "test_error_mean": float(test_errors.mean()),
    "test_error_std": float(test_errors.std(ddof=1)) if num_draws > 1 else 0.0,
    "test_errors": [float(e) for e in test_errors],
    "C": best_c,
    "C_at_grid_edge": edge,
    "val_error": val_errors.get(best_c),
    "val_errors": [{"C": c, "error": e} for c, e in val_errors.items()],
    "feature_dim": int(train_feats.shape[1]),
    "num_train": int(n),
    "num_test": int(test_feats.shape[0]),
    "num_labelled": num_labelled,
    "val_size": val_size,
    "num_draws": num_draws,
    "select_draws": select_draws if len(Cs) > 1 else 0,
    "not_converged": int(not_converged),
    "seconds": time.perf_counter() - t0,
  }


def grid_edge(Cs: Sequence[float], C: float) -> str | None:
  """Which end of the grid `Cs` the value `C` is: "smallest", "largest" or None.

  None also for a grid of one value, which is no choice.
  """
  Cs = sorted(float(c) for c in Cs)
  if len(Cs) < 2:
    return None
  if float(C) == Cs[0]:
    return "smallest"
  if float(C) == Cs[-1]:
    return "largest"
  return None


def paired_gain(baseline: dict, features: dict) -> dict:
  """How much lower `features`' test error is than `baseline`'s, paired over draws.

  Both must come from `svm_protocol` with the same seed and draw count, so that draw i
  of each used the same labelled examples. Returns the mean gain (baseline error -
  features error, as a fraction), its standard error over draws, and the number of
  draws where `features` had the lower error.
  """
  a = np.asarray(baseline["test_errors"], np.float64)
  b = np.asarray(features["test_errors"], np.float64)
  if a.shape != b.shape:
    raise ValueError(f"Unpaired results: {a.size} and {b.size} draws.")
  diff = a - b
  stderr = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0
  return {
    "gain_mean": float(diff.mean()),
    "gain_stderr": stderr,
    "wins": int(np.sum(diff > 0)),
    "draws": int(diff.size),
  }
