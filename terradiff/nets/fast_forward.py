"""A network's forward made fast for fixed shapes: compiled, or replayed as a CUDA graph.

Samplers stay pure functions of a ``model_fn`` (:mod:`terradiff.diffusion.samplers`); the speed
of sampling comes from the network call inside it. A DDIM-20 run calls the denoiser 20 times on
the same shapes, and a tiled map calls it on the same tile batch again and again, so the forward
can be prepared once per shape:

* ``compile``: the net's repeated blocks are compiled in place with ``torch.compile`` (regional
  compilation, :func:`terradiff.nets.compile.compile_regions`): element-wise work is fused;
* ``graph``: the whole forward is captured once per input shape as a CUDA graph
  (:class:`torch.cuda.CUDAGraph`) and replayed: one launch instead of hundreds of kernel
  launches, which is where a small UNet spends its time on a large GPU;
* ``compile+graph``: both: the blocks compiled, then the whole compiled forward captured as one
  CUDA graph per shape, so the fused kernels run without the launch of each (what
  ``torch.compile``'s ``reduce-overhead`` mode does per compiled region, here once for the whole
  net); the warm-up calls before a capture compile every block for that shape, so nothing
  compiles inside a capture. Off CUDA it is ``compile``;
* ``off``: the eager network.

The capture follows the recipe of PyTorch's CUDA-graphs documentation ("CUDA Graphs" in the
CUDA semantics notes, https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs, and
:class:`torch.cuda.graph`): warm up a few iterations on a side stream, capture into static input
and output buffers, then copy each call's inputs into the static inputs, ``replay()`` and read
the static output. :class:`GraphedForward` keeps one capture per input signature (shapes, dtypes,
devices; least recently used dropped past ``max_graphs``), so a new shape (the last, smaller
batch of a tiled run) is captured again rather than replaying the wrong graph. The capture
itself is a :class:`CaptureBackend`: :class:`CudaGraphBackend` on the GPU; tests hand in one
that calls the function eagerly, so the keying and re-capture logic runs on the CPU.

A graph replays exactly what was captured: it is only used for no-grad calls with tensor (or
None) positional arguments and, as the only keyword, a conditional model's ``condition=``
(:class:`terradiff.nets.conditioning.Condition`, whose labels, metadata and presence tensors are
passed to the capture as three more positional inputs and rebuilt inside it); any other keyword
(e.g. a ControlNet's residuals) goes eager, and so does every call while a ``TorchDispatchMode``
is active (the tiling engine's memory probe counts the tensors of an eager call). Outputs are
cloned out of the static buffer, so a sampler may keep one step's output while the next replays.
"""

from __future__ import annotations

import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

from terradiff.nets.compile import COMPILED_BLOCKS, compile_regions
from terradiff.nets.conditioning import Condition

__all__ = [
    "FAST_POLICIES",
    "CaptureBackend",
    "CudaGraphBackend",
    "EagerCaptureBackend",
    "GraphedForward",
    "autocast_state",
    "call_signature",
    "condition_inputs",
    "fast_forward",
    "resolve_fast",
]

#: The policies of ``sample.fast`` / ``--fast`` (``terradiff.config.FAST_POLICIES`` names the
#: same, tested; defined here too so that this module, like the nets, imports without pydantic:
#: a lent GPU machine runs the benchmarks without it).
FAST_POLICIES: tuple[str, ...] = ("auto", "compile", "graph", "compile+graph", "off")

#: Captures a :class:`GraphedForward` keeps (each holds its activations in a private pool).
MAX_GRAPHS = 4
#: Warm-up calls before a capture (the PyTorch docs' example runs 3 on a side stream).
WARMUP_CALLS = 3

Args = tuple[Tensor | None, ...]


def resolve_fast(policy: str, device: torch.device | str) -> str:
    """``policy`` as what runs on ``device``: ``"compile"``, ``"graph"``, ``"compile+graph"`` or
    ``"off"``.

    ``auto`` is ``graph`` on CUDA and ``off`` elsewhere; ``graph`` needs CUDA and is ``off`` on
    other devices (the eager net, with identical outputs), ``compile+graph`` is ``compile``
    there; ``compile`` is honoured anywhere.

    Raises:
        ValueError: ``policy`` is not one of :data:`FAST_POLICIES`.
    """
    if policy not in FAST_POLICIES:
        raise ValueError(f"fast must be one of {list(FAST_POLICIES)}, got {policy!r}")
    cuda = torch.device(device).type == "cuda"
    if policy == "auto":
        return "graph" if cuda else "off"
    if not cuda and policy in ("graph", "compile+graph"):
        return "off" if policy == "graph" else "compile"
    return policy


def call_signature(args: Args) -> tuple[Hashable, ...]:
    """What a capture depends on: each argument's shape, dtype and device (None for None)."""
    return tuple(
        None if a is None else (tuple(a.shape), a.dtype, a.device, a.stride()) for a in args
    )


def autocast_state(args: Args) -> tuple[Hashable, ...]:
    """Autocast's setting for each device type among ``args``: on/off and, when on, its dtype.

    A graph replays the kernels it recorded, casts included, so a call under another autocast
    setting (fp32 after a bf16 capture, say) needs its own capture.
    """
    kinds = sorted({a.device.type for a in args if a is not None})
    state = []
    for kind in kinds:
        enabled = torch.is_autocast_enabled(kind)
        state.append((kind, enabled, torch.get_autocast_dtype(kind) if enabled else None))
    return tuple(state)


class CaptureBackend(Protocol):
    """Captures ``fn(*inputs)`` once; replays it on whatever the static ``inputs`` then hold."""

    def capture(self, fn: Callable[..., Tensor], inputs: Args) -> tuple[Tensor, Callable[[], Any]]:
        """Capture ``fn`` on the static ``inputs``; its static output (unset until the first
        replay) and a ``replay()`` that computes it in place from the current ``inputs``."""
        ...


class CudaGraphBackend:
    """The CUDA-graph capture of PyTorch's documentation ("Whole-network capture").

    Warm-up runs ``warmup`` calls on a side stream (so the allocator and lazy initialisations,
    e.g. cuDNN's algorithm choice, happen outside the capture), then the call is captured with
    :class:`torch.cuda.graph` into its own memory pool. The graph object stays alive through the
    returned ``replay`` bound method.
    """

    def __init__(self, warmup: int = WARMUP_CALLS) -> None:
        self.warmup = warmup

    def capture(self, fn: Callable[..., Tensor], inputs: Args) -> tuple[Tensor, Callable[[], Any]]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                fn(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = fn(*inputs)
        return output, graph.replay


class EagerCaptureBackend:
    """A stand-in for tests on the CPU: "replay" calls ``fn`` again on the static inputs and
    writes the result into the static output, as a graph replay would. Like a real capture,
    which records kernels without running them, the capture leaves the static output unset
    (NaN here), so a caller that reads it before a replay is caught.

    Attributes:
        captures: the signatures captured, in order.
        replays: replays run.
    """

    def __init__(self) -> None:
        self.captures: list[tuple[Hashable, ...]] = []
        self.replays = 0

    def capture(self, fn: Callable[..., Tensor], inputs: Args) -> tuple[Tensor, Callable[[], Any]]:
        self.captures.append(call_signature(inputs))
        output = torch.full_like(fn(*inputs), float("nan"))

        def replay() -> None:
            self.replays += 1
            output.copy_(fn(*inputs))

        return output, replay


@dataclass
class _Capture:
    """One captured call: its static inputs, static output and replay."""

    inputs: Args
    output: Tensor
    replay: Callable[[], Any]


class GraphedForward:
    """``fn(*args)`` replayed from one capture per input signature.

    Args:
        fn: the function captured (e.g. a network's forward); positional tensors or None.
        backend: how a call is captured (default :class:`CudaGraphBackend`).
        max_graphs: captures kept; the least recently used is dropped past it.
        state: a callable whose value joins the key (e.g. the parameters' addresses: a graph
            reads the parameter storages it was captured with, so a moved net is captured
            again).

    Attributes:
        captures: signature -> capture, least recently used first.
        uncapturable: the keys whose capture failed (run eagerly).
    """

    def __init__(
        self,
        fn: Callable[..., Tensor],
        *,
        backend: CaptureBackend | None = None,
        max_graphs: int = MAX_GRAPHS,
        state: Callable[[], Hashable] | None = None,
    ) -> None:
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be >= 1, got {max_graphs}")
        self.fn = fn
        self.backend = backend if backend is not None else CudaGraphBackend()
        self.max_graphs = max_graphs
        self.state = state
        self.captures: OrderedDict[Hashable, _Capture] = OrderedDict()
        self.uncapturable: set[Hashable] = set()

    def key(self, args: Args) -> Hashable:
        """The capture ``args`` replay: their signature, the autocast setting and the ``state``."""
        state = None if self.state is None else self.state()
        return (call_signature(args), autocast_state(args), state)

    def __call__(self, *args: Tensor | None) -> Tensor:
        """``fn(*args)``, replayed from the capture of ``args``' signature (captured first)."""
        key = self.key(args)
        if key in self.uncapturable:
            return self.fn(*args)
        entry = self.captures.get(key)
        if entry is None:
            entry = self._capture(key, args)  # its static inputs hold ``args`` already
            if entry is None:
                return self.fn(*args)
        else:
            self.captures.move_to_end(key)
            for static, value in zip(entry.inputs, args, strict=True):
                if static is not None:
                    static.copy_(value)
        entry.replay()  # also after a capture: capturing records the kernels, it runs none
        return entry.output.clone()

    def _capture(self, key: Hashable, args: Args) -> _Capture | None:
        """Capture on static copies of ``args`` (whose output is then that of ``args``); None
        when the capture fails (e.g. a host synchronisation inside ``fn``): that signature then
        runs ``fn`` eagerly, with a warning."""
        while len(self.captures) >= self.max_graphs:
            self.captures.popitem(last=False)
        inputs = tuple(None if a is None else a.detach().clone() for a in args)
        try:
            output, replay = self.backend.capture(self.fn, inputs)
        except Exception as error:  # any capture failure falls back to eager
            self.uncapturable.add(key)
            warnings.warn(
                f"capturing the denoiser as a CUDA graph failed ({type(error).__name__}: "
                f"{error}); it runs eagerly for these shapes (sample.fast: off avoids the try)",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        entry = _Capture(inputs=inputs, output=output, replay=replay)
        self.captures[key] = entry
        return entry


def _parameter_state(net: nn.Module) -> Callable[[], Hashable]:
    """The addresses of ``net``'s first and last parameter and its mode (a capture's key part)."""
    ref = weakref.ref(net)

    def state() -> Hashable:
        module = ref()
        if module is None:
            return None
        params = list(module.parameters())
        ends = (params[0], params[-1]) if params else ()
        return (module.training, tuple((p.device, p.data_ptr()) for p in ends))

    return state


def condition_inputs(kwargs: dict[str, Any]) -> Args | None:
    """The keywords of a call as graph inputs: ``()`` for none (or ``condition=None``), the
    ``(labels, metadata, present)`` of a lone ``condition=`` :class:`Condition`, None for
    anything else (the call goes eager)."""
    if not kwargs:
        return ()
    if set(kwargs) != {"condition"}:
        return None
    condition = kwargs["condition"]
    if condition is None:
        return ()
    if not isinstance(condition, Condition):
        return None
    return (condition.labels, condition.metadata, condition.present)


class FastForward:
    """A network call routed to its graphed forward when a graph can replay it.

    A call with a ``condition=`` goes to a second graphed forward whose last three inputs are the
    condition's tensors (:func:`condition_inputs`). Eager (``net`` itself) for other keywords,
    arguments that are not tensors, calls with gradients, a net in training mode (dropout), and
    while a ``TorchDispatchMode`` is active.
    """

    def __init__(self, net: nn.Module, graphed: GraphedForward) -> None:
        self._net = weakref.ref(net)  # the per-net cache must not keep the net alive
        self.graphed = graphed
        self.conditioned: GraphedForward | None = None

    @property
    def net(self) -> nn.Module:
        """The network (alive while its caller holds it)."""
        net = self._net()
        if net is None:
            raise RuntimeError("the network of this FastForward was freed")
        return net

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        extra = condition_inputs(kwargs)
        graphable = (
            extra is not None
            and not torch.is_grad_enabled()
            and not self.net.training
            and _get_current_dispatch_mode() is None
            and all(a is None or isinstance(a, Tensor) for a in args)
        )
        if not graphable:
            return self.net(*args, **kwargs)
        if not extra:
            return self.graphed(*args)
        return self._conditioned()(*args, *extra)

    def _conditioned(self) -> GraphedForward:
        """The graphed ``net(*inputs[:-3], condition=Condition(*inputs[-3:]))``."""
        if self.conditioned is None:
            ref = self._net

            def forward(*inputs: Tensor | None) -> Tensor:
                labels, metadata, present = inputs[-3:]
                condition = Condition(labels, metadata, present)
                return ref()(*inputs[:-3], condition=condition)  # type: ignore[misc]

            self.conditioned = GraphedForward(
                forward,
                backend=self.graphed.backend,
                max_graphs=self.graphed.max_graphs,
                state=self.graphed.state,
            )
        return self.conditioned


_GRAPHED: weakref.WeakKeyDictionary[nn.Module, FastForward] = weakref.WeakKeyDictionary()
_COMPILED: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _compiled_already(net: nn.Module) -> bool:
    """Whether ``net``'s blocks were compiled (here, or by training's ``train.compile``)."""
    if net in _COMPILED:
        return True
    blocks = [m for m in net.modules() if isinstance(m, COMPILED_BLOCKS)]
    return bool(blocks) and all(getattr(b, "_compiled_call_impl", None) for b in blocks)


def fast_forward(
    net: nn.Module,
    policy: str = "auto",
    *,
    device: torch.device | str | None = None,
    backend: CaptureBackend | None = None,
    compile_backend: str = "inductor",
) -> Callable[..., Tensor]:
    """A callable like ``net(...)`` that runs it the ``policy`` way (:func:`resolve_fast`).

    ``off`` returns ``net`` itself; ``compile`` compiles ``net``'s blocks in place (once) and
    returns ``net``; ``graph`` returns a :class:`FastForward` kept per net (its captures are
    reused by later calls: every tile batch of a map, every image batch of a run);
    ``compile+graph`` compiles the blocks, then returns that :class:`FastForward`.

    Args:
        net: the network. Graphed, its output must depend on nothing but its positional
            arguments and tensors it holds for its lifetime (parameters, buffers, e.g. a wrapper's
            fixed context): a graph reads the memory it was captured with. Eval mode only (a
            net in training mode runs eagerly).
        policy: one of :data:`FAST_POLICIES`.
        device: where ``net`` runs (default: its first parameter's device).
        backend: the capture of ``graph`` (default :class:`CudaGraphBackend`; a test passes
            :class:`EagerCaptureBackend`, which also makes ``graph`` and ``compile+graph`` run
            off CUDA).
        compile_backend: the ``torch.compile`` backend of ``compile``.

    Raises:
        ValueError: an unknown ``policy``.
    """
    if device is None:
        first = next(net.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    mode = resolve_fast(policy, device)
    if backend is not None and policy in ("graph", "compile+graph"):
        mode = policy
    if mode == "off":
        return net
    if mode in ("compile", "compile+graph") and not _compiled_already(net):
        compile_regions(net, backend=compile_backend)
        _COMPILED.add(net)
    if mode == "compile":
        return net
    cached = _GRAPHED.get(net)
    if cached is None or (backend is not None and cached.graphed.backend is not backend):
        ref = weakref.ref(net)

        def forward(*args: Tensor | None) -> Tensor:
            return ref()(*args)  # type: ignore[misc]

        graphed = GraphedForward(forward, backend=backend, state=_parameter_state(net))
        cached = FastForward(net, graphed)
        _GRAPHED[net] = cached
    return cached
