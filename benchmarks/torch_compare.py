"""innjax's sampler step against a straightforward PyTorch eager version of it.

The same synthesis step in both frameworks, 1 stage, batch 100, 32x32 and 64x64:
the paper's DCGAN discriminator (conv 5x5 stride 2 with 64/128/256/512 channels,
BatchNorm in eval mode after every conv but the first, leaky ReLU 0.2, flatten,
linear -> 1 logit), then one Adam step on the *image* that ascends the summed logit
(lr 0.02, betas (0.5, 0.999)), then a clamp to [-1, 1].

* PyTorch: `nn.Conv2d(padding=2)` in NCHW (eager, oneDNN on CPU), weights frozen
  (requires_grad False, so no weight gradients), `torch.optim.Adam([x])` minimising
  -sum(logits), `x.clamp_(-1, 1)`; `torch.set_num_threads(<usable cores>)`.
* innjax "step": `make_sampler(make_logit_fn(Classifier(conv_impl=...)),
  step_size=0.02, beta1=0.5, stop_prob=None, clip=(-1.0, 1.0)).step`, jitted, one call
  per step, state chained between calls.
* innjax "run": the same sampler's `run` with max_steps=--steps, jitted: one call
  does all the steps in a `lax.while_loop` (how training and sampling call it). Its
  per-step time is the call's time / (steps + 0.5): the run ends with one forward
  pass for the final P(real), half a step of work. XLA allocates an executable's
  temporaries afresh on every call; a step pays that (page faults on first touch,
  expensive on a virtual machine) every step, the run once per call.

The two run in the same invocation, interleaved: each of --repeats rounds times
--steps consecutive steps of PyTorch, then of innjax's step, then one innjax run of
--steps steps (blocking on innjax's images at the end of each), so load from other processes hits both about equally; the
per-step median over rounds is reported, and the ratio innjax / PyTorch (> 1: innjax
slower) with its inverse, the speed-up.

Before timing, the PyTorch network is loaded with innjax's variables (BatchNorm
statistics included; innjax uses TF "SAME" padding, i.e. (1, 2) for these layers, so
the check model pads asymmetrically) and the logits and input gradients of both are
compared on a few images, so the two really compute the same function.

FLOP convention: per image forward = sum over convs 2*k*k*Cin*Cout*Hout*Wout + 2*D
(dense); forward + input gradient = 2x forward (--grad-factor to change). padding=2
and "SAME" give the same output sizes, so the count is the same for both.

The classifier *training* step is compared too (--parts train): the same network in
training mode (BatchNorm on batch statistics), 50 positives + 50 negatives, sigmoid
cross-entropy, weight gradients only (the images need none), SGD lr 0.01 -- what
configs/svhn.py trains each stage. PyTorch: `net.train()`, `torch.optim.SGD`, one
fixed batch, --steps updates per round. innjax: the real training chunk
(`train.make_train_chunk`, --steps updates in one `lax.scan`), which on top also
draws its 50 positives and 50 age-weighted pool negatives on the device every update;
per update = chunk time / --steps.

PyTorch is a benchmark-only tool, not an innjax dependency: install the CPU build
with `pip install torch==2.13.0` (other versions may download multi-GB CUDA builds).
If PyTorch is not installed this prints a message and exits 0.

Usage:
  python benchmarks/torch_compare.py               # 32x32 and 64x64, batch 100, ~10 min
  python benchmarks/torch_compare.py --quick       # batch 20
  python benchmarks/torch_compare.py --conv-impls auto,xla --json out.json
  python benchmarks/torch_compare.py --parts train --sizes 32   # training step only
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import common  # Imports jax; torch is imported in main() so its absence is reported.


def parse_args():
  """The command line (see the module docstring), with defaults filled in."""
  p = common.make_parser(__doc__, repeats=5)
  p.add_argument("--batch", type=int, default=None, help="default 100 (quick 20)")
  p.add_argument("--sizes", type=common.parse_int_list, default=[32, 64])
  p.add_argument(
    "--steps", type=int, default=None, help="steps per timed round (default 5, quick 3)"
  )
  p.add_argument(
    "--conv-impls",
    type=common.parse_str_list,
    default=["auto"],
    help="innjax conv implementations to time (default auto)",
  )
  p.add_argument(
    "--threads",
    type=int,
    default=None,
    help="torch.set_num_threads (default: usable cores)",
  )
  p.add_argument(
    "--channels-last",
    action="store_true",
    help="also time PyTorch with channels_last memory format",
  )
  p.add_argument(
    "--parts",
    type=common.parse_str_list,
    default=["sampler", "train"],
    help="sampler (the synthesis step), train (the classifier update)",
  )
  p.add_argument(
    "--cases",
    type=parse_cases,
    default=[(32, 1), (64, 1), (32, 10)],
    help="sampler cases SIZExSTAGES (sum mode over the stages), default 32x1,64x1,32x10",
  )
  return common.fill_defaults(p.parse_args(), batch=(100, 20), steps=(5, 3))


def parse_cases(text):
  """'32x1,64x1,32x10' -> [(32, 1), (64, 1), (32, 10)]."""
  return [tuple(int(v) for v in c.split("x")) for c in text.split(",") if c.strip()]


def build_torch_net(torch, features, size, channels=3, same_padding=False):
  """The DCGAN discriminator in PyTorch (NCHW); BatchNorm after all convs but the first."""
  nn = torch.nn

  class Discriminator(nn.Module):
    """The paper network as a PyTorch module (NCHW)."""

    def __init__(self):
      super().__init__()
      convs, norms = [], []
      c_in = channels
      for i, c_out in enumerate(features):
        convs.append(
          nn.Conv2d(c_in, c_out, 5, stride=2, padding=0 if same_padding else 2)
        )
        norms.append(nn.BatchNorm2d(c_out, eps=1e-5) if i > 0 else nn.Identity())
        c_in = c_out
      self.convs = nn.ModuleList(convs)
      self.norms = nn.ModuleList(norms)
      spatial = size // 2 ** len(features)
      self.logit = nn.Linear(c_in * spatial * spatial, 1)

    def forward(self, x):
      for conv, norm in zip(self.convs, self.norms):
        if same_padding:  # TF/XLA "SAME" for k=5, s=2, even size: (1, 2).
          x = nn.functional.pad(x, (1, 2, 1, 2))
        x = nn.functional.leaky_relu(norm(conv(x)), 0.2)
      return self.logit(torch.flatten(x, 1))[:, 0]

  net = Discriminator().eval()
  for p in net.parameters():
    p.requires_grad_(False)
  return net


def load_innjax_variables(torch, net, variables, features, size):
  """Copies one innjax stage's variables (params + batch_stats) into `net`."""
  import numpy as np

  params, stats = variables["params"], variables["batch_stats"]
  with torch.no_grad():
    for i, conv in enumerate(net.convs):
      k = np.asarray(params[f"conv{i}"]["kernel"])  # HWIO
      conv.weight.copy_(torch.from_numpy(k.transpose(3, 2, 0, 1).copy()))  # OIHW
      conv.bias.copy_(torch.from_numpy(np.array(params[f"conv{i}"]["bias"])))
      if i > 0:
        bn = net.norms[i]
        bn.weight.copy_(torch.from_numpy(np.array(params[f"bn{i}"]["scale"])))
        bn.bias.copy_(torch.from_numpy(np.array(params[f"bn{i}"]["bias"])))
        bn.running_mean.copy_(torch.from_numpy(np.array(stats[f"bn{i}"]["mean"])))
        bn.running_var.copy_(torch.from_numpy(np.array(stats[f"bn{i}"]["var"])))
    # innjax flattens NHWC as (h, w, c); PyTorch flattens NCHW as (c, h, w).
    spatial = size // 2 ** len(features)
    w = np.asarray(params["logit"]["kernel"])[:, 0]  # (h*w*c,)
    w = w.reshape(spatial, spatial, features[-1]).transpose(2, 0, 1).reshape(1, -1)
    net.logit.weight.copy_(torch.from_numpy(w.copy()))
    net.logit.bias.copy_(torch.from_numpy(np.array(params["logit"]["bias"])))


def main():
  """Runs the benchmark and prints its report."""
  args = parse_args()
  try:
    import torch
  except ImportError:
    print("PyTorch not installed; pip install torch==2.13.0 for the CPU build")
    return 0

  import jax
  import numpy as np
  from innjax import cascade, models, sampler

  bench = common.Bench("torch_compare", args)
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  threads = args.threads or usable
  torch.set_num_threads(threads)
  torch_info = {
    "torch": torch.__version__,
    "threads": torch.get_num_threads(),
    "mkldnn": bool(torch.backends.mkldnn.is_available()),
    "interop_threads": torch.get_num_interop_threads(),
  }
  features = (64, 128, 256, 512)
  key = jax.random.PRNGKey(args.seed)
  rows, checks = [], []

  for size, num_stages in args.cases if "sampler" in args.parts else []:
    common.log(f"size {size}, {num_stages} stage(s): building variables ...")
    ref_model = models.Classifier(conv_impl="im2col")
    stacked = common.stacked_variables(
      ref_model, size, num_stages, jax.random.fold_in(key, size)
    )
    stage = cascade.get_stage(stacked, 0)
    x0_j = common.random_images(jax.random.fold_in(key, 1000 + size), args.batch, size)
    x0_np = np.asarray(x0_j)
    x0_t = torch.from_numpy(x0_np.transpose(0, 3, 1, 2).copy())  # NCHW

    # Same function? innjax logits and input gradients vs PyTorch with copied weights.
    check_net = build_torch_net(torch, features, size, same_padding=True)
    load_innjax_variables(torch, check_net, stage, features, size)
    xs = x0_t[:4].clone().requires_grad_(True)
    lt = check_net(xs)
    lt.sum().backward()
    logit_fn = models.make_logit_fn(ref_model)
    lj_vec = np.asarray(logit_fn(stage, x0_j[:4]))
    gj = np.asarray(jax.grad(lambda x: logit_fn(stage, x).sum())(x0_j[:4]))
    gt = xs.grad.numpy().transpose(0, 2, 3, 1)
    check = {
      "size": size,
      "max_abs_logit_diff": float(np.max(np.abs(lt.detach().numpy() - lj_vec))),
      "max_abs_logit": float(np.max(np.abs(lj_vec))),
      "max_abs_grad_diff": float(np.max(np.abs(gt - gj))),
      "max_abs_grad": float(np.max(np.abs(gj))),
    }
    checks.append(check)
    common.log(
      f"  check: logits differ by {check['max_abs_logit_diff']:.2e} "
      f"(|logit| <= {check['max_abs_logit']:.2e}), grads by "
      f"{check['max_abs_grad_diff']:.2e} (|g| <= {check['max_abs_grad']:.2e})"
    )

    # --- PyTorch eager step (padding=2, the usual way to write it).
    variants = [("pytorch eager NCHW", False)]
    if args.channels_last:
      variants.append(("pytorch eager channels_last", True))
    torch_steps = []
    for name, channels_last in variants:
      nets = []
      for i in range(num_stages):  # one network per stage, each with its variables
        net = build_torch_net(torch, features, size)
        load_innjax_variables(torch, net, cascade.get_stage(stacked, i), features, size)
        if channels_last:
          net = net.to(memory_format=torch.channels_last)
        nets.append(net)
      x = x0_t.clone()
      if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
      x.requires_grad_(True)
      opt = torch.optim.Adam([x], lr=0.02, betas=(0.5, 0.999))

      def torch_step(nets=nets, x=x, opt=opt):
        opt.zero_grad(set_to_none=True)
        loss = -sum(net(x).sum() for net in nets)  # ascend the summed logits
        loss.backward()
        opt.step()
        with torch.no_grad():
          x.clamp_(-1.0, 1.0)

      torch_steps.append((name, torch_step))

    # --- innjax: the jitted step called once per step, and the jitted run (the
    # lax.while_loop that training and sampling call) doing --steps steps per call.
    jax_steps, compile_s, temp_mb, work = [], {}, {}, {}
    for impl in args.conv_impls:
      model = models.Classifier(conv_impl=impl)
      smp = sampler.make_sampler(
        models.make_logit_fn(model),
        step_size=0.02,
        beta1=0.5,
        beta2=0.999,
        stop_prob=None,
        max_steps=args.steps,
        clip=(-1.0, 1.0),
      )
      state0 = smp.init(x0_j, jax.random.PRNGKey(1))
      resolved = models.resolve_conv_impl(impl)
      compiled, cinfo = common.compile_jitted(smp.step, stacked, state0)
      name = f"innjax {impl} ({resolved}) step"
      jax_steps.append((name, common.chained(compiled, state0, stacked)))
      compile_s[name], temp_mb[name] = cinfo["total_compile_s"], cinfo.get("temp_mb")
      run, rinfo = common.compile_jitted(smp.run, stacked, x0_j, jax.random.PRNGKey(1))
      name = f"innjax {impl} ({resolved}) run"
      # One call = all --steps steps, so the round calls it once; its final P(real)
      # forward pass is half a step of work.
      jax_steps.append(
        (name, lambda run=run: run(stacked, x0_j, jax.random.PRNGKey(1))[0])
      )
      compile_s[name], temp_mb[name] = rinfo["total_compile_s"], rinfo.get("temp_mb")
      work[name] = args.steps + 0.5

    # The first calls (PyTorch allocates and picks oneDNN kernels) are reported
    # apart; then rounds of --steps steps of each implementation in turn.
    first = {}
    for name, fn in torch_steps + jax_steps:
      t0 = time.perf_counter()
      common.block(fn())
      first[name] = time.perf_counter() - t0
    common.log(f"  timing {args.repeats} rounds x {args.steps} steps ...")
    timings = common.interleaved(
      {
        name: (
          lambda fn=fn, n=1 if name in work else args.steps: [fn() for _ in range(n)]
        )
        for name, fn in torch_steps + jax_steps
      },
      rounds=args.repeats,
      warmup=1,
    )
    per_step = {
      name: [t / work.get(name, args.steps) for t in timing["times_s"]]
      for name, timing in timings.items()
    }

    flops = common.grad_step_flops(
      ref_model, size, size, args.batch, num_stages, args.grad_factor
    )
    torch_ref = statistics.median(per_step[torch_steps[0][0]])
    for name in per_step:
      med = statistics.median(per_step[name])
      rows.append(
        {
          "part": "sampler",
          "stages": num_stages,
          "size": size,
          "batch": args.batch,
          "impl": name,
          "median_s": med,
          "min_s": min(per_step[name]),
          "max_s": max(per_step[name]),
          "round_times_s": per_step[name],
          "first_call_s": first[name],
          "compile_s": compile_s.get(name),
          **common.rate_fields(flops, med, args.batch, bench.peak_gflops),
          "ratio_vs_pytorch": med / torch_ref,
          "speedup_vs_pytorch": torch_ref / med,
          "xla_temp_mb": temp_mb.get(name),
        }
      )
      common.log(f"    {name:32s} {med * 1e3:8.1f} ms/step")

  for size in args.sizes if "train" in args.parts else []:
    rows += compare_training(args, torch, bench, size, jax.random.fold_in(key, size))

  bench.header(
    "innjax vs PyTorch eager: sampler step and classifier training step",
    f"PyTorch {torch_info['torch']}, {torch_info['threads']} threads (interop "
    f"{torch_info['interop_threads']}), oneDNN available: {torch_info['mkldnn']}",
  )
  print_report(args, rows, checks)
  bench.finish(torch=torch_info, checks=checks, rows=rows)
  return 0


def compare_training(args, torch, bench, size, key):
  """The classifier training step, PyTorch eager against innjax's training chunk.

  Returns:
    table rows (part "train"), one per implementation, per-update medians.
  """
  import jax
  import jax.numpy as jnp
  from innjax import models, synthesis, train

  common.log(f"training step {size}x{size}: building ...")
  config = common.load_config("svhn")
  config.data.image_size = size
  config.train.log_every = args.steps
  rows, fns, work, compile_s = [], {}, {}, {}
  k_state, k_pos, k_run = jax.random.split(key, 3)
  for impl in args.conv_impls:
    config.model.conv_impl = impl
    model = synthesis.build_model(config)
    tx = train.make_optimizer(config)
    state = train.init_state(config, model, k_state)
    positives = jax.random.randint(k_pos, (1000, size, size, 3), 0, 256).astype(jnp.uint8)
    compiled, cinfo = common.compile_jitted(
      train.make_train_chunk(model, config, tx),
      state.params,
      state.batch_stats,
      state.opt_state,
      state.pool,
      positives,
      k_run,
    )
    holder = {"vars": (state.params, state.batch_stats, state.opt_state), "i": 0}

    def chunk(compiled=compiled, holder=holder, state=state, positives=positives):
      holder["i"] += 1
      params, stats, opt, _ = compiled(
        *holder["vars"], state.pool, positives, jax.random.fold_in(k_run, holder["i"])
      )
      holder["vars"] = (params, stats, opt)
      return params

    name = f"innjax {impl} ({models.resolve_conv_impl(impl)}) training chunk"
    fns[name], work[name], compile_s[name] = chunk, args.steps, cinfo["total_compile_s"]

  batch = int(config.train.pos_batch) + int(config.train.neg_batch)
  net = build_torch_net(torch, (64, 128, 256, 512), size).train()
  for p in net.parameters():
    p.requires_grad_(True)
  opt = torch.optim.SGD(net.parameters(), lr=float(config.train.learning_rate))
  gen = torch.Generator().manual_seed(args.seed)
  x = torch.rand((batch, 3, size, size), generator=gen) * 2 - 1
  labels = torch.cat(
    [torch.ones(int(config.train.pos_batch)), torch.zeros(int(config.train.neg_batch))]
  )
  loss_fn = torch.nn.functional.binary_cross_entropy_with_logits

  def torch_update():
    opt.zero_grad(set_to_none=True)
    loss_fn(net(x), labels).backward()
    opt.step()

  torch_name = "pytorch eager NCHW training step"
  fns = {torch_name: lambda: [torch_update() for _ in range(args.steps)], **fns}
  work[torch_name] = args.steps
  common.log(f"  timing {args.repeats} rounds x {args.steps} updates ...")
  timings = common.interleaved(fns, rounds=args.repeats, warmup=1)
  flops = common.train_step_flops(models.Classifier(), size, size, batch)
  per = {n: [t / work[n] for t in timing["times_s"]] for n, timing in timings.items()}
  ref = statistics.median(per[torch_name])
  for n, times in per.items():
    med = statistics.median(times)
    rows.append(
      {
        "part": "train",
        "stages": 1,
        "size": size,
        "batch": batch,
        "impl": n,
        "median_s": med,
        "min_s": min(times),
        "max_s": max(times),
        "round_times_s": times,
        "first_call_s": None,
        "compile_s": compile_s.get(n),
        **common.rate_fields(flops, med, batch, bench.peak_gflops),
        "ratio_vs_pytorch": med / ref,
        "speedup_vs_pytorch": ref / med,
        "xla_temp_mb": None,
      }
    )
    common.log(f"    {n:40s} {med * 1e3:8.1f} ms/update")
  return rows


def print_report(args, rows, checks):
  """Prints the report tables below the header."""
  headers = [
    "part",
    "case",
    "implementation",
    "batch",
    "compile s",
    "1st call s",
    "ms/step",
    "img*steps/s",
    "GFLOP/s",
    "% peak",
    "XLA temp MB",
    "time / PyTorch",
    "speed-up vs PyTorch",
  ]
  table = []
  for r in rows:
    case = f"{r['size']}x{r['size']}, {r['stages']} stage" + (
      "s summed" if r["stages"] > 1 else ""
    )
    table.append(
      [
        r["part"],
        case,
        r["impl"],
        r["batch"],
        common.fmt(r["compile_s"]),
        common.fmt(r["first_call_s"], 2),
        common.fmt(r["median_s"] * 1e3),
        common.fmt(r["items_per_s"]),
        common.fmt(r["gflops"]),
        common.fmt(r["pct_peak"], 0),
        common.fmt(r["xla_temp_mb"], 0),
        common.fmt(r["ratio_vs_pytorch"], 2),
        common.fmt(r["speedup_vs_pytorch"], 2),
      ]
    )
  print(common.markdown_table(headers, table, align="lllrrrrrrrrrr"))
  print()
  print(
    f"Median over {args.repeats} interleaved rounds after a warm-up round. Per-step "
    f"time: PyTorch and innjax 'step' = round time / {args.steps} steps; innjax "
    f"'run' = time of one run of {args.steps} steps / {args.steps + 0.5} (its final "
    "P(real) forward pass is half a step of work). 'compile s' = innjax "
    "trace+lower+XLA compile; '1st call s' = first call after that (PyTorch: its "
    "first eager step; innjax run: a whole run). 'XLA temp MB' = temporaries of the "
    "compiled executable. 'time / PyTorch' > 1 means slower than PyTorch eager. "
    + common.FLOP_NOTE.format(factor=args.grad_factor)
    + " Training rows: ms per "
    "update (50 + 50 images); FLOPs = (3 x forward - first conv) x batch."
  )
  print(
    "\nSame-function check (innjax variables copied into PyTorch, 'SAME' "
    "padding, 4 images):"
  )
  for c in checks:
    print(
      f"- {c['size']}x{c['size']}: max |logit diff| {c['max_abs_logit_diff']:.1e} "
      f"(max |logit| {c['max_abs_logit']:.1e}); max |grad diff| "
      f"{c['max_abs_grad_diff']:.1e} (max |grad| {c['max_abs_grad']:.1e})"
    )
  print("\nTargets:")
  for r in rows:
    if not r["impl"].startswith("innjax"):
      continue
    print(
      f"- {r['part']} {r['size']}x{r['size']} x {r['stages']} {r['impl']}: "
      f"{r['speedup_vs_pytorch']:.2f}x the PyTorch eager throughput (target >= "
      f"1.2): {common.verdict(r['speedup_vs_pytorch'] >= 1.2)}"
    )


if __name__ == "__main__":
  sys.exit(main())
