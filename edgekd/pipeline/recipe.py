"""The recipe: one YAML file that configures every stage of the pipeline.

Sections mirror the stages (data, teacher, student, search, distill, export,
quantize, bench, gate); each is a typed dataclass owned by its stage's module, so the
recipe stays in step with the code. Unknown keys fail with "did you mean".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgekd import resources
from edgekd.bench.runner import BenchConfig
from edgekd.config import apply_overrides, from_dict, load_yaml
from edgekd.data.sources import DataSpec
from edgekd.deploy.stage import DeploySection
from edgekd.errors import ConfigError
from edgekd.export.onnx_export import ExportConfig
from edgekd.models.trust import trust_model_names
from edgekd.pipeline.distill_stage import DistillSection, StudentSection
from edgekd.pipeline.teacher_stage import TeacherSection
from edgekd.quantize.ort_static import QuantizeConfig
from edgekd.search.config import SearchSection


@dataclasses.dataclass
class GateSection:
    target: str = "x86-cpu-onnxruntime-int8"
    enabled: bool = True


@dataclasses.dataclass
class Recipe:
    name: str = "modrec"
    data: DataSpec = dataclasses.field(default_factory=DataSpec)
    teacher: TeacherSection = dataclasses.field(default_factory=TeacherSection)
    student: StudentSection = dataclasses.field(default_factory=StudentSection)
    search: SearchSection = dataclasses.field(default_factory=SearchSection)
    distill: DistillSection = dataclasses.field(default_factory=DistillSection)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    quantize: QuantizeConfig = dataclasses.field(default_factory=QuantizeConfig)
    bench: BenchConfig = dataclasses.field(default_factory=BenchConfig)
    gate: GateSection = dataclasses.field(default_factory=GateSection)
    deploy: DeploySection = dataclasses.field(default_factory=DeploySection)
    # Folder that relative paths in the recipe are read from (the recipe file's folder).
    base_dir: str = "."
    # The recipe file itself, for messages; set by load_recipe (a recipe cannot set it).
    source_file: str = dataclasses.field(default="", init=False)

    def path(self, value: str) -> Path:
        """A path from the recipe: relative to the recipe file when it exists there, else as given.

        Recipe files name their data relative to themselves; a ``--set`` override
        typed on the command line names it relative to the working directory.
        """
        path = Path(value)
        beside_recipe = Path(self.base_dir) / path
        return beside_recipe if not path.is_absolute() and beside_recipe.exists() else path


def load_recipe(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load a recipe by path or built-in name, apply ``a.b=c`` overrides, validate strictly.

    Every ConfigError about the file's content names the file.
    """
    path = resources.resolve("recipes", name_or_path)
    data = apply_overrides(load_yaml(path), overrides)
    try:
        if "base_dir" in data:
            raise ConfigError("'base_dir' is set by edgekd, not by the recipe", hint="remove it")
        recipe = from_dict(Recipe, data)
        recipe.base_dir = str(path.resolve().parent)
        recipe.source_file = str(path)
        # The recipe's author named these models: the files this run writes from them may name them too.
        trust_model_names(recipe_models(recipe))
    except ConfigError as exc:
        if str(path) in exc.message:
            raise
        raise ConfigError(f"recipe {path}: {exc.message}", hint=exc.hint) from None
    return recipe


def recipe_models(recipe: Recipe) -> list[tuple[str, dict[str, Any]]]:
    """The (model name, kwargs) pairs the recipe itself writes: teacher and student."""
    return [(recipe.teacher.model, recipe.teacher.kwargs), (recipe.student.model, recipe.student.kwargs)]
