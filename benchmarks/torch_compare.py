"""innjax's sampler step against a straightforward PyTorch eager version of it.

The same synthesis step in both frameworks, 1 stage, batch 100, 32x32 and 64x64:
the paper's DCGAN discriminator (conv 5x5 stride 2 with 64/128/256/512 channels,
BatchNorm in eval mode after every conv but the first, leaky ReLU 0.2, flatten,
linear -> 1 logit), then one Adam step on the *image* that ascends the summed logit
(lr 0.02, betas (0.5, 0.999)), then a clamp to [-1, 1].

* PyTorch: `nn.Conv2d(padding=2)` in NCHW (eager, oneDNN on CPU), weights frozen
  (requires_grad False, so no weight gradients), `torch.optim.Adam([x])` minimising
  -sum(logits), `x.clamp_(-1, 1)`; `torch.set_num_threads(<usable cores>)`.
* innjax: `make_sampler(make_logit_fn(Classifier(conv_impl=...)), step_size=0.02,
  beta1=0.5, stop_prob=None).step`, jitted, state chained between calls.

The two run in the same invocation, interleaved: each of --repeats rounds times
--steps consecutive steps of PyTorch, then of innjax (innjax blocks on the result of
every step), so load from other processes hits both about equally; the per-step
median over rounds is reported, and the ratio innjax / PyTorch (> 1: innjax slower).

Before timing, the PyTorch network is loaded with innjax's variables (BatchNorm
statistics included; innjax uses TF "SAME" padding, i.e. (1, 2) for these layers, so
the check model pads asymmetrically) and the logits and input gradients of both are
compared on a few images, so the two really compute the same function.

FLOP convention: per image forward = sum over convs 2*k*k*Cin*Cout*Hout*Wout + 2*D
(dense); forward + input gradient = 2x forward (--grad-factor to change). padding=2
and "SAME" give the same output sizes, so the count is the same for both.

If PyTorch is not installed this prints a message and exits 0.

Usage:
  python benchmarks/torch_compare.py               # 32x32 and 64x64, batch 100, ~3-5 min
  python benchmarks/torch_compare.py --quick       # batch 20
  python benchmarks/torch_compare.py --conv-impls auto,xla --json out.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import common  # Imports jax; torch is imported in main() so its absence is reported.


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  common.add_common_args(p, repeats=5)
  p.add_argument("--batch", type=int, default=None, help="default 100 (quick 20)")
  p.add_argument("--sizes", type=common.parse_int_list, default=[32, 64])
  p.add_argument("--steps", type=int, default=None,
                 help="steps per timed round (default 5, quick 3)")
  p.add_argument("--conv-impls", type=common.parse_str_list, default=["auto"],
                 help="innjax conv implementations to time (default auto)")
  p.add_argument("--threads", type=int, default=None,
                 help="torch.set_num_threads (default: usable cores)")
  p.add_argument("--channels-last", action="store_true",
                 help="also time PyTorch with channels_last memory format")
  args = p.parse_args()
  args.repeats = common.default_repeats(args, full=5)
  if args.batch is None:
    args.batch = 20 if args.quick else 100
  if args.steps is None:
    args.steps = 3 if args.quick else 5
  return args


def build_torch_net(torch, features, size, channels=3, same_padding=False):
  """The DCGAN discriminator in PyTorch (NCHW); BatchNorm after all convs but the first."""
  nn = torch.nn

  class Discriminator(nn.Module):

    def __init__(self):
      super().__init__()
      convs, norms = [], []
      c_in = channels
      for i, c_out in enumerate(features):
        convs.append(nn.Conv2d(c_in, c_out, 5, stride=2,
                               padding=0 if same_padding else 2))
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
      k = np.asarray(params[f"conv{i}"]["kernel"])            # HWIO
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
    w = np.asarray(params["logit"]["kernel"])[:, 0]            # (h*w*c,)
    w = w.reshape(spatial, spatial, features[-1]).transpose(2, 0, 1).reshape(1, -1)
    net.logit.weight.copy_(torch.from_numpy(w.copy()))
    net.logit.bias.copy_(torch.from_numpy(np.array(params["logit"]["bias"])))


def main():
  args = parse_args()
  try:
    import torch
  except ImportError:
    print("PyTorch not installed; pip install torch==2.13.0 for the CPU build")
    return 0

  import jax
  import numpy as np
  from innjax import cascade, models, sampler

  t_start = time.perf_counter()
  info = common.machine_info()
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  threads = args.threads or usable
  torch.set_num_threads(threads)
  torch_info = {
      "torch": torch.__version__, "threads": torch.get_num_threads(),
      "mkldnn": bool(torch.backends.mkldnn.is_available()),
      "interop_threads": torch.get_num_interop_threads(),
  }
  common.log("measuring matmul peak ...")
  peak = common.matmul_peak(args.matmul_n)
  features = (64, 128, 256, 512)
  key = jax.random.PRNGKey(args.seed)
  rows, checks = [], []

  for size in args.sizes:
    common.log(f"size {size}: building variables ...")
    ref_model = models.Classifier(conv_impl="im2col")
    stacked = common.stacked_variables(ref_model, size, 1, jax.random.fold_in(key, size))
    stage = cascade.get_stage(stacked, 0)
    x0_j = common.random_images(jax.random.fold_in(key, 1000 + size), args.batch, size)
    x0_np = np.asarray(x0_j)
    x0_t = torch.from_numpy(x0_np.transpose(0, 3, 1, 2).copy())   # NCHW

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
    common.log(f"  check: logits differ by {check['max_abs_logit_diff']:.2e} "
               f"(|logit| <= {check['max_abs_logit']:.2e}), grads by "
               f"{check['max_abs_grad_diff']:.2e} (|g| <= {check['max_abs_grad']:.2e})")

    # --- PyTorch eager step (padding=2, the usual way to write it).
    variants = [("pytorch eager NCHW", False)]
    if args.channels_last:
      variants.append(("pytorch eager channels_last", True))
    torch_steps = []
    for name, channels_last in variants:
      net = build_torch_net(torch, features, size)
      net.load_state_dict(check_net.state_dict())
      x = x0_t.clone()
      if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
      x.requires_grad_(True)
      opt = torch.optim.Adam([x], lr=0.02, betas=(0.5, 0.999))

      def torch_step(net=net, x=x, opt=opt):
        opt.zero_grad(set_to_none=True)
        loss = -net(x).sum()          # ascend the logit
        loss.backward()
        opt.step()
        with torch.no_grad():
          x.clamp_(-1.0, 1.0)

      torch_steps.append((name, torch_step))

    # --- innjax sampler step.
    jax_steps = []
    for impl in args.conv_impls:
      model = models.Classifier(conv_impl=impl)
      smp = sampler.make_sampler(models.make_logit_fn(model), step_size=0.02,
                                 beta1=0.5, beta2=0.999, stop_prob=None)
      state0 = smp.init(x0_j, jax.random.PRNGKey(1))
      compiled, cinfo = common.compile_jitted(smp.step, stacked, state0)
      holder = {"state": state0}

      def jax_step(compiled=compiled, holder=holder):
        holder["state"], _ = compiled(stacked, holder["state"])
        jax.block_until_ready(holder["state"].x)

      jax_steps.append((f"innjax {impl} ({models.resolve_conv_impl(impl)})",
                        jax_step, cinfo))

    # Warm-up (first PyTorch calls allocate and pick oneDNN kernels).
    first = {}
    for name, fn in torch_steps:
      t0 = time.perf_counter()
      fn()
      first[name] = time.perf_counter() - t0
      fn()
    for name, fn, _ in jax_steps:
      t0 = time.perf_counter()
      fn()
      first[name] = time.perf_counter() - t0

    # Interleaved rounds.
    per_step = {name: [] for name, _ in torch_steps}
    per_step.update({name: [] for name, _, _ in jax_steps})
    common.log(f"  timing {args.repeats} rounds x {args.steps} steps ...")
    for _ in range(args.repeats):
      for name, fn in torch_steps + [(n, f) for n, f, _ in jax_steps]:
        t0 = time.perf_counter()
        for _ in range(args.steps):
          fn()
        per_step[name].append((time.perf_counter() - t0) / args.steps)

    flops = common.grad_step_flops(ref_model, size, size, args.batch, 1,
                                   args.grad_factor)
    torch_ref = statistics.median(per_step[torch_steps[0][0]])
    compile_s = {n: c["trace_lower_s"] + c["compile_s"] for n, _, c in jax_steps}
    for name in per_step:
      med = statistics.median(per_step[name])
      rows.append({
          "size": size, "batch": args.batch, "impl": name, "median_s": med,
          "min_s": min(per_step[name]), "max_s": max(per_step[name]),
          "round_times_s": per_step[name], "first_call_s": first[name],
          "compile_s": compile_s.get(name),
          "images_steps_per_s": args.batch / med, "gflops": flops / med / 1e9,
          "pct_peak": 100.0 * flops / med / 1e9 / peak["median_gflops"],
          "ratio_vs_pytorch": med / torch_ref,
      })
      common.log(f"    {name:32s} {med * 1e3:8.1f} ms/step")

  total_s = time.perf_counter() - t_start
  print_report(args, info, torch_info, peak, rows, checks, total_s)
  common.write_json(args.json, {
      "benchmark": "torch_compare", "machine": info, "torch": torch_info,
      "matmul_peak": peak, "args": vars(args), "checks": checks, "rows": rows,
      "total_s": total_s})
  return 0


def print_report(args, info, torch_info, peak, rows, checks, total_s):
  print("# innjax sampler step vs PyTorch eager (1 stage)\n")
  print(common.machine_markdown(info))
  print(f"- PyTorch {torch_info['torch']}, {torch_info['threads']} threads "
        f"(interop {torch_info['interop_threads']}), oneDNN available: "
        f"{torch_info['mkldnn']}")
  print(f"- float32 matmul {peak['n']}x{peak['n']}: {peak['median_gflops']:.1f} "
        f"GFLOP/s median, {peak['best_gflops']:.1f} best (the '% peak' reference)\n")
  headers = ["size", "implementation", "batch", "compile s", "1st call s", "ms/step",
             "img*steps/s", "GFLOP/s", "% peak", "time / PyTorch"]
  table = []
  for r in rows:
    table.append([f"{r['size']}x{r['size']}", r["impl"], r["batch"],
                  common.fmt(r["compile_s"]), common.fmt(r["first_call_s"], 2),
                  common.fmt(r["median_s"] * 1e3), common.fmt(r["images_steps_per_s"]),
                  common.fmt(r["gflops"]), common.fmt(r["pct_peak"], 0),
                  common.fmt(r["ratio_vs_pytorch"], 2)])
  print(common.markdown_table(headers, table, align="llrrrrrrrr"))
  print()
  print(f"Median over {args.repeats} interleaved rounds of {args.steps} steps each "
        "(per-step time = round time / steps), after warm-up. 'compile s' = innjax "
        "trace+lower+XLA compile; '1st call s' = first call after that (PyTorch: "
        "its first eager step). 'time / PyTorch' > 1 means slower than PyTorch "
        "eager. " + common.FLOP_NOTE.format(factor=args.grad_factor))
  print("\nSame-function check (innjax variables copied into PyTorch, 'SAME' "
        "padding, 4 images):")
  for c in checks:
    print(f"- {c['size']}x{c['size']}: max |logit diff| {c['max_abs_logit_diff']:.1e} "
          f"(max |logit| {c['max_abs_logit']:.1e}); max |grad diff| "
          f"{c['max_abs_grad_diff']:.1e} (max |grad| {c['max_abs_grad']:.1e})")
  print(f"\nTotal wall time {total_s / 60:.1f} min.")


if __name__ == "__main__":
  sys.exit(main())
