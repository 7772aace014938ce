"""The ranker compiled to machine code: the same LightGBM text model, the same scores, faster.

lleaves (Böhm, "lleaves: a LLVM-based compiler for LightGBM models") turns the model text into
one native function per forest with LLVM, in-process: no C toolchain at start-up. Measured side
by side on this machine (``feedstack bench rankers``: 500-row blocks, one thread, the same
inputs, identical scores): see docs/serving.md. LightGBM's own predict pays per call for its
Python wrapper and per row for building a sparse row view; treelite/tl2cgen emits C that gcc must
compile (a toolchain at start-up, seconds per model) and was slower than lleaves.

Scores equal LightGBM's to float tolerance and the ranked order is identical (a test pins both);
thresholds are compared in double precision as LightGBM does, inputs are widened to float64.

The compiled object is cached by the model text's hash, the lleaves version and the host CPU (the
code is specialised to it) in ``cache_dir``; workers starting at once each compile to a private
file and rename it into place, so a reader never sees half a file.

lleaves 1.3.0 (the newest on PyPI) still drives LLVM's legacy pass manager, which llvmlite 0.45
removed (numba needs llvmlite >= 0.45 here); upstream moved to the new pass manager after that
release. ``_new_pass_manager`` is that change, applied only when the legacy API is missing;
drop it once a fixed lleaves is released.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from feedstack.core.errors import DataError
from feedstack.models.rank.lgbm import FloatMatrix, Ranker

log = logging.getLogger(__name__)
BACKENDS = ("lleaves", "lightgbm")


def _new_pass_manager() -> None:
    """Let lleaves 1.3.0 compile with llvmlite >= 0.45 (see the module docstring)."""
    import llvmlite.binding as llvm

    if hasattr(llvm, "PassManagerBuilder"):
        return
    import llvmlite.ir
    from lleaves import lleaves as entry
    from lleaves import llvm_binding
    from lleaves.compiler import tree_compiler
    from lleaves.compiler.ast import parse_to_ast
    from lleaves.compiler.codegen import gen_forest

    def initialize() -> None:  # llvm.initialize() is automatic (and raises) since 0.45
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()

    def compile_to_module(
        file_path: Any,
        fblocksize: int = 34,
        finline: bool = True,
        raw_score: bool = False,
        froot_func_name: str = "forest_root",
        use_fp64: bool = True,
    ) -> Any:
        forest = parse_to_ast(file_path)
        forest.raw_score = raw_score
        ir = llvmlite.ir.Module(name="forest")
        gen_forest(forest, ir, fblocksize, froot_func_name, use_fp64)
        ir.triple = llvm.get_process_triple()
        module = llvm.parse_assembly(str(ir))
        module.name = str(file_path)
        module.verify()
        initialize()
        machine = llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine()
        tuning = llvm.create_pipeline_tuning_options(speed_level=3)
        if finline:
            tuning.inlining_threshold = 1
        builder = llvm.create_pass_builder(machine, tuning)
        builder.getModulePassManager().run(module, builder)
        return module

    llvm_binding._initialize_llvm = initialize
    tree_compiler.compile_to_module = compile_to_module
    entry.compiler.compile_to_module = compile_to_module


def cache_key(model_text: str) -> str:
    """What the compiled object depends on: the model, the compiler, the host CPU."""
    from importlib.metadata import version

    import llvmlite
    import llvmlite.binding as llvm

    h = hashlib.sha256(model_text.encode())
    for part in (version("lleaves"), llvmlite.__version__, llvm.get_host_cpu_name()):
        h.update(b"\0" + part.encode())
    # LLVM raises when it cannot detect the features here: the CPU name stands alone then.
    with contextlib.suppress(RuntimeError):
        h.update(b"\0" + llvm.get_host_cpu_features().flatten().encode())
    return h.hexdigest()[:32]


class CompiledRanker(Ranker):
    """A Ranker whose ``predict`` runs the lleaves-compiled forest (everything else, saving
    included, is the LightGBM model's)."""

    backend = "lleaves"

    def __init__(self, ranker: Ranker, cache_dir: Path | None = None) -> None:
        super().__init__(
            ranker.booster, ranker.feature_names, ranker.params, ranker.metrics, ranker.data_hash
        )
        import lleaves

        _new_pass_manager()
        text = ranker.booster.model_to_string()
        with tempfile.TemporaryDirectory(prefix="feedstack-lleaves-") as tmp:
            model_file = Path(tmp) / "model.txt"
            model_file.write_text(text, encoding="utf-8")
            self._model = lleaves.Model(model_file=str(model_file))
            if self._model.num_feature() != len(self.feature_names):
                raise DataError(
                    f"compiled ranker: {self._model.num_feature()} features in the model text, "
                    f"{len(self.feature_names)} names"
                )
            self.cache_path: Path | None = None
            if cache_dir is None:
                self._model.compile()
            else:
                cache_dir.mkdir(parents=True, exist_ok=True)
                self.cache_path = cache_dir / f"lleaves-{cache_key(text)}.o"
                if self.cache_path.exists():
                    self._model.compile(cache=str(self.cache_path))
                else:  # compile to a private file, then rename it into place (atomic)
                    private = cache_dir / f".{self.cache_path.name}.{os.getpid()}.tmp"
                    self._model.compile(cache=str(private))
                    os.replace(private, self.cache_path)

    def predict(self, features: FloatMatrix, num_threads: int = 1) -> FloatMatrix:
        if features.ndim != 2 or features.shape[1] != len(self.feature_names):
            raise DataError(
                f"ranker expects {len(self.feature_names)} features, got shape {features.shape}"
            )
        scores = self._model.predict(np.asarray(features, dtype=np.float64), n_jobs=num_threads)
        return np.asarray(scores, dtype=np.float32)


def compile_ranker(ranker: Ranker, cache_dir: Path | None = None) -> Ranker:
    """The compiled ranker, or ``ranker`` itself (LightGBM's predict) when lleaves is missing or
    cannot compile here: the same scores either way, only slower; the reason is logged."""
    try:
        return CompiledRanker(ranker, cache_dir)
    except Exception as exc:  # an optional accelerator: never a reason not to serve
        log.warning("ranker not compiled (serving with LightGBM's predict): %s", exc)
        return ranker
