"""Convolution and matrix-product FLOPs, counted exactly from jaxprs.

These are the FLOPs a matrix unit does: products with padding zeros (and with
the zeros a strided convolution's input gradient dilates its argument with)
are left out, as XLA counts them, and element-wise work is not counted.
Benchmarks divide achieved FLOP/s by the device's measured peak with them.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.extend.core
import jax.numpy as jnp


def _window_taps(in_size: int, out_size: int, kernel: int, stride: int,
                 padding: tuple[int, int], lhs_dilation: int,
                 rhs_dilation: int) -> int:
  """Kernel taps over all outputs of one spatial axis that hit real inputs."""
  extent = (in_size - 1) * lhs_dilation + 1
  return sum(
      1 for o in range(out_size) for k in range(kernel)
      if 0 <= (p := o * stride + k * rhs_dilation - padding[0]) < extent
      and p % lhs_dilation == 0)


def _conv_flops(eqn) -> float:
  """2 x the multiply-adds of a convolution that involve no padding zeros."""
  lhs, rhs = (v.aval for v in eqn.invars[:2])
  out = eqn.outvars[0].aval
  params = eqn.params
  specs = params["dimension_numbers"]
  if params["feature_group_count"] * params["batch_group_count"] != 1:
    raise NotImplementedError("grouped convolutions")
  taps = 1
  for axis, (l, r, o) in enumerate(zip(specs.lhs_spec[2:], specs.rhs_spec[2:],
                                       specs.out_spec[2:])):
    taps *= _window_taps(
        lhs.shape[l], out.shape[o], rhs.shape[r],
        params["window_strides"][axis], params["padding"][axis],
        params["lhs_dilation"][axis], params["rhs_dilation"][axis])
  return (2.0 * out.shape[specs.out_spec[0]] * out.shape[specs.out_spec[1]] *
          rhs.shape[specs.rhs_spec[1]] * taps)


def _dot_flops(eqn) -> float:
  lhs = eqn.invars[0].aval
  out = eqn.outvars[0].aval
  (contracting, _), _ = eqn.params["dimension_numbers"]
  return 2.0 * math.prod(out.shape) * math.prod(lhs.shape[d]
                                                for d in contracting)


def jaxpr_flops(jaxpr) -> float:
  """Convolution and matrix-product FLOPs of a (closed) jaxpr.

  Scan bodies count ``length`` times, the costliest branch of a ``cond``
  once, and while-loop bodies once (their trip count is not static).
  """
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      total += _conv_flops(eqn)
    elif name == "dot_general":
      total += _dot_flops(eqn)
    else:
      inner = [jaxpr_flops(j)
               for j in jax.extend.core.jaxprs_in_params(eqn.params)]
      if name == "cond":
        total += max(inner, default=0.0)
      elif name == "scan":
        total += eqn.params["length"] * sum(inner)
      else:
        total += sum(inner)
  return total


def function_flops(fn: Callable[..., Any], *args) -> float:
  """FLOPs of one call ``fn(*args)``; ``args`` may be shape structs."""
  return jaxpr_flops(jax.make_jaxpr(fn)(*args))


def forward_flops_per_image(forward: Callable[[Any, jax.Array], jax.Array],
                            variables: Any, image_size: int,
                            batch: int = 8) -> float:
  """FLOPs per image of ``forward(variables, uint8 images)``."""
  images = jax.ShapeDtypeStruct((batch, image_size, image_size, 3), jnp.uint8)
  return function_flops(forward, variables, images) / batch


def xla_flops(lowered) -> float | None:
  """XLA's own FLOP estimate of a lowered or compiled program, if any."""
  try:
    analysis = lowered.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get("flops")
  return float(flops) if flops and flops > 0 else None
