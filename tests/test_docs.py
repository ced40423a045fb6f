"""The README and docs/ pages: every shell command is tested or marked, links resolve, README is short.

Pure standard library (it runs before any environment exists:
``python3 -c 'import sys; sys.path.insert(0, "tests"); import test_docs as t; ...'``).

Every command line of a ```bash / ```sh / ```shell block of README.md and
docs/*.md (comment and blank lines skipped, backslash continuations joined)
must either

* end with a trailing comment ``# GPU`` or ``# full COCO`` (it needs a GPU or
  the full COCO data set, which CI does not have), or
* be a key of :data:`TESTED_BY`, whose value names the test that runs it:
  a pytest node id ``tests/<file>.py::<test function>``, or ``.ci/run`` for
  the make targets CI runs as written. The tests run the same entry point
  (the same tool, script, config and launcher), on the bundled mini COCO
  (``tests/data/coco``, pointed at with ``--cfg-options``) instead of the
  full data set, on a shortened schedule and with random weights where
  the command names a released checkpoint or ImageNet weights.

A command that is neither fails here: test it, mark it, or drop it from the docs.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
SHELL_LANGUAGES = ("bash", "sh", "shell")
MARKERS = ("GPU", "full COCO")
CI = ".ci/run"

_MAIN_JOB = "tests/mmpose0/test_main_job.py"
_STOCK0 = "tests/mmpose0/test_stock_tools.py"
_STOCK1 = "tests/mmpose1/test_stock_tools.py"
_WHEEL0 = "tests/mmpose0/test_wheel_install.py"
_DIST = "tests/test_distribution.py"
_SETUP = "tests/test_setup_script.py"
_BENCH = "tests/mmpose0/test_benchmark_script.py::test_tiny_training_run_prints_tables_and_writes_numbers"
_INSTALLED_CONFIG = f"{_WHEEL0}::test_stock_train_then_test_run_from_the_installed_config"

#: Command (as extracted: continuations joined, trailing comment dropped,
#: whitespace collapsed) -> the test that runs it.
TESTED_BY: Dict[str, str] = {
    # --- README: install, configs, tools, the clone's commands -------------------------
    "pip install /path/to/resnest_plugin":
        f"{_WHEEL0}::test_installed_wheel_registers_the_scoped_backbone",
    "pip wheel --no-deps .":
        f"{_DIST}::test_wheel_carries_every_config_model_index_and_requirements_as_files",
    "pip install resnest_plugin-*.whl":
        f"{_DIST}::test_installed_wheel_imports_from_its_target_and_knows_it_is_no_clone",
    "mim search resnest_plugin":
        f"{_WHEEL0}::test_mim_search_lists_the_recipes_of_the_installed_wheel",
    'CONFIGS=$(python -c "import os, resnest_plugin; '
    'print(os.path.join(os.path.dirname(resnest_plugin.__file__), \'.mim\', \'configs\'))")':
        _INSTALLED_CONFIG,
    'TOOLS=$(python -c "import os, mmpose; '
    'print(os.path.join(os.path.dirname(mmpose.__file__), \'.mim\', \'tools\'))")':
        f"{_STOCK0}::test_stock_train_then_test_on_mini_coco",
    "python $TOOLS/train.py $CONFIGS/top_down/resnest/coco/resnest50_coco_256x192.py "
    "--work-dir work_dirs/r50":
        f"{_STOCK0}::test_stock_train_then_test_on_mini_coco",
    "python $TOOLS/test.py $CONFIGS/top_down/resnest/coco/resnest50_coco_256x192.py "
    "work_dirs/r50/latest.pth --eval mAP":
        f"{_STOCK0}::test_stock_train_then_test_on_mini_coco",
    "mim train mmpose $CONFIGS/top_down/resnest/coco/resnest50_coco_256x192.py --gpus 1 "
    "--work-dir work_dirs/r50":
        f"{_STOCK0}::test_mim_train_then_test_on_mini_coco",
    "python $TOOLS/train.py "
    "$CONFIGS/body_2d_keypoint/topdown_heatmap/coco/td-hm_resnest50_8xb64-210e_coco-256x192.py "
    "--work-dir work_dirs/r50":
        f"{_STOCK1}::test_stock_train_logs_a_finite_loss_every_iteration_and_writes_a_checkpoint",
    "python $TOOLS/test.py "
    "$CONFIGS/body_2d_keypoint/topdown_heatmap/coco/td-hm_resnest50_8xb64-210e_coco-256x192.py "
    "work_dirs/r50/epoch_210.pth":
        f"{_STOCK1}::test_stock_test_evaluates_the_runner_checkpoint_with_detector_boxes_and_flip",
    "mim train mmpose "
    "$CONFIGS/body_2d_keypoint/topdown_heatmap/coco/td-hm_resnest50_8xb64-210e_coco-256x192.py "
    "--launcher none --work-dir work_dirs/r50":
        f"{_STOCK1}::test_mim_train_then_mim_test_on_mini_coco",
    "make demo": f"{_MAIN_JOB}::test_demo_metrics_file_has_every_field_and_the_loss_falls",
    "make test": CI,
    "make test-slow": CI,
    "make test STACK=mmpose1": CI,
    "make test-slow STACK=mmpose1": CI,
    "make test-matrix STACK=mmpose0-legacy": CI,
    "make test-matrix STACK=mmpose1-torch2.1": CI,
    "make test-matrix STACK=mmpose1-newest": CI,
    "make setup STACK=mmpose1":
        f"{_SETUP}::test_cold_branch_builds_caches_and_installs_from_relative_paths",
    # --- docs/installation.md -----------------------------------------------------------
    "VENV=/path/to/venv bash scripts/setup_env.sh":
        f"{_SETUP}::test_cold_branch_builds_caches_and_installs_from_relative_paths",
    "STACK=mmpose1 VENV=/path/to/venv bash scripts/setup_env.sh":
        f"{_SETUP}::test_cold_branch_builds_caches_and_installs_from_relative_paths",
    "RESNEST_PLUGIN_PCH=0 RESNEST_PLUGIN_SETUP_TIMES=outputs/setup-times.tsv make setup":
        f"{_SETUP}::test_build_benchmark_runs_each_variant_through_the_cold_branch",
    # --- docs/recipes.md ----------------------------------------------------------------
    "python $TOOLS/train.py configs/top_down/resnest/coco/resnest50_coco_256x192.py "
    "--work-dir work_dirs/r50 --cfg-options model.pretrained=None":
        f"{_STOCK0}::test_stock_train_then_test_on_mini_coco",
    "python $TOOLS/train.py configs/top_down/resnest/coco/resnest50_coco_256x192.py "
    "--work-dir work_dirs/r50 --resume-from work_dirs/r50/latest.pth":
        "tests/mmpose0/test_train_resume.py::test_sigkill_mid_epoch_then_resume_finishes",
    "python $TOOLS/test.py configs/top_down/resnest/coco/resnest50_coco_256x192.py "
    "work_dirs/r50/latest.pth --eval mAP":
        f"{_STOCK0}::test_stock_train_then_test_on_mini_coco",
    "mim train mmpose configs/top_down/resnest/coco/resnest50_coco_256x192.py --gpus 1 "
    "--work-dir work_dirs/r50 --cfg-options model.pretrained=None":
        f"{_STOCK0}::test_mim_train_then_test_on_mini_coco",
    "mim test mmpose configs/top_down/resnest/coco/resnest50_coco_256x192.py "
    "--checkpoint work_dirs/r50/latest.pth --eval mAP":
        f"{_STOCK0}::test_mim_train_then_test_on_mini_coco",
    "python $TOOLS/train.py "
    "configs/body_2d_keypoint/topdown_heatmap/coco/td-hm_resnest50_8xb64-210e_coco-256x192.py "
    "--work-dir work_dirs/r50 --cfg-options model.backbone.init_cfg=None":
        f"{_STOCK1}::test_stock_train_logs_a_finite_loss_every_iteration_and_writes_a_checkpoint",
    "python $TOOLS/train.py "
    "configs/body_2d_keypoint/topdown_heatmap/coco/td-hm_resnest50_8xb64-210e_coco-256x192.py "
    "--work-dir work_dirs/r50 --resume --cfg-options model.backbone.init_cfg=None":
        "tests/mmpose1/test_train_resume.py::test_sigkill_mid_epoch_then_resume_finishes",
    "python $TOOLS/test.py "
    "configs/body_2d_keypoint/topdown_heatmap/coco/td-hm_resnest50_8xb64-210e_coco-256x192.py "
    "work_dirs/r50/epoch_210.pth":
        f"{_STOCK1}::test_stock_test_evaluates_the_runner_checkpoint_with_detector_boxes_and_flip",
    "mim train mmpose "
    "configs/body_2d_keypoint/topdown_heatmap/coco/td-hm_resnest50_8xb64-210e_coco-256x192.py "
    "--launcher none --work-dir work_dirs/r50 --cfg-options model.backbone.init_cfg=None":
        f"{_STOCK1}::test_mim_train_then_mim_test_on_mini_coco",
    "mim test mmpose "
    "configs/body_2d_keypoint/topdown_heatmap/coco/td-hm_resnest50_8xb64-210e_coco-256x192.py "
    "--checkpoint work_dirs/r50/epoch_210.pth --launcher none":
        f"{_STOCK1}::test_mim_train_then_mim_test_on_mini_coco",
    'python -c "from mmpose.apis import MMPoseInferencer as I; '
    "r = I(pose2d='configs/body_2d_keypoint/topdown_heatmap/coco/"
    "td-hm_resnest50_8xb64-210e_coco-256x192.py', pose2d_weights='work_dirs/r50/epoch_210.pth', "
    "device='cpu', det_model='whole_image'); "
    "next(r('tests/data/coco/000000196141.jpg', vis_out_dir='outputs/vis1x'))\"":
        "tests/mmpose1/test_inferencer.py::"
        "test_inferencer_without_detector_draws_a_skeleton_on_the_bundled_image",
    'MMPOSE=$(python -c "import os, mmpose; print(os.path.dirname(mmpose.__file__))")':
        "tests/mmpose0/test_demo_mmdet.py::test_mmpose_demo_script_with_mmdet_writes_the_picture",
    'MMDET=$(python -c "import os, mmdet; print(os.path.dirname(mmdet.__file__))")':
        "tests/mmpose0/test_demo_mmdet.py::test_mmpose_demo_script_with_mmdet_writes_the_picture",
    "python $MMPOSE/.mim/demo/top_down_img_demo_with_mmdet.py "
    "$MMDET/.mim/configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py "
    "faster_rcnn_r50_fpn_1x_coco_20200130-047c8118.pth "
    "configs/top_down/resnest/coco/resnest50_coco_256x192.py "
    "resnest50_coco_256x192-6e65eece_20210320.pth --img-root tests/data/coco "
    "--img 000000196141.jpg --out-img-root outputs/vis --device cpu":
        "tests/mmpose0/test_demo_mmdet.py::test_mmpose_demo_script_with_mmdet_writes_the_picture",
    # --- docs/distributed.md ------------------------------------------------------------
    "python -m torch.distributed.run --nproc_per_node=2 $TOOLS/train.py "
    "configs/body_2d_keypoint/topdown_heatmap/coco/td-hm_resnest50_8xb64-210e_coco-256x192.py "
    "--launcher pytorch --work-dir work_dirs/r50_ddp --cfg-options model.backbone.init_cfg=None "
    "env_cfg.dist_cfg.backend=gloo model_wrapper_cfg.type=MMDistributedDataParallel "
    "model_wrapper_cfg.device_ids=None model_wrapper_cfg.broadcast_buffers=False":
        f"{_STOCK1}::test_torchrun_two_gloo_ranks_train_a_few_iterations",
    # --- docs/demo.md -------------------------------------------------------------------
    ".venv/bin/python tools/run_demo.py --iterations 12 --eval-interval 6 --out-dir outputs/demo-short":
        f"{_MAIN_JOB}::test_demo_metrics_file_has_every_field_and_the_loss_falls",
    ".venv/bin/python tools/run_demo.py --checkpoint resnest50_coco_256x192-6e65eece_20210320.pth "
    "--out-dir outputs/demo-ckpt":
        f"{_MAIN_JOB}::test_demo_with_a_checkpoint_skips_training",
    # --- docs/checkpoints-and-data-errors.md --------------------------------------------
    "python -m resnest_plugin.weights convert resnest101e.pth resnest101_mmpose.pth":
        "tests/test_weights.py::test_convert_cli_writes_a_strictly_loadable_state_dict",
    "python -m resnest_plugin.hosts.mmpose0.checkpoint_check "
    "configs/top_down/resnest/coco/resnest50_coco_256x192.py work_dirs/r50/latest.pth":
        "tests/mmpose0/test_data_errors.py::test_checkpoint_check_command_exit_status",
    # --- docs/benchmarks.md -------------------------------------------------------------
    "make bench": _BENCH,
    ".venv/bin/python benchmarks/benchmark_backbone.py --quick": _BENCH,
    ".venv/bin/python benchmarks/benchmark_backbone.py --sections forward --depths 50 --sizes 256x192 "
    "--compile": _BENCH,
    ".venv/bin/python benchmarks/benchmark_backbone.py --sections tools": _BENCH,
    ".venv/bin/python benchmarks/benchmark_backbone.py --sections memory": _BENCH,
    ".venv-mmpose1/bin/python benchmarks/benchmark_backbone.py --quick": _BENCH,
    ".venv/bin/python benchmarks/benchmark_backbone.py --sections forward train "
    "--json benchmarks/results/bench_mmpose0.json": _BENCH,
    ".venv-mmpose1/bin/python benchmarks/benchmark_backbone.py --sections forward train "
    "--json benchmarks/results/bench_mmpose1.json": _BENCH,
    ".venv/bin/python benchmarks/mmcv_build.py --stack mmpose0 --variants plain,pch-debug,pch "
    "--max-jobs 2 --out benchmarks/results/mmcv_build_mmpose0.json":
        f"{_SETUP}::test_build_benchmark_runs_each_variant_through_the_cold_branch",
    # --- docs/development.md ------------------------------------------------------------
    ".venv/bin/python -m pytest tests/mmpose0/test_resnest.py --update-golden":
        "tests/mmpose0/test_resnest.py::test_released_checkpoint_key_list_matches_golden_file",
    # --- docs/deploy.md: Export, INT8 and speed (the exporter) ----------------------------
    "python -m resnest_plugin.deploy export configs/top_down/resnest/coco/resnest50_coco_256x192.py "
    "work_dirs/r50/latest.pth r50.onnx":
        "tests/mmpose0/test_deploy_export.py::test_file_equals_mmpose_forward_test",
    "python -m resnest_plugin.deploy export configs/top_down/resnest/coco/resnest50_coco_256x192.py "
    "work_dirs/r50/latest.pth r50_int8.onnx --int8":
        "tests/mmpose0/test_deploy_export.py::test_cli_int8_export_runs",
    ".venv/bin/python benchmarks/deploy_benchmark.py --min-seconds 1":
        "tests/mmpose0/test_deploy_export.py::test_deploy_benchmark_smoke_writes_both_tables",
    ".venv/bin/python benchmarks/deploy_benchmark.py --accuracy-only --accuracy-config "
    "configs/top_down/resnest/coco/resnest50_coco_256x192.py --accuracy-checkpoint "
    "outputs/demo/train/epoch_12.pth --accuracy-size 128x96":
        "tests/mmpose0/test_deploy_export.py::test_deploy_benchmark_smoke_writes_both_tables",
    # --- docs/deploy.md: Run, Evaluate (the runner) -------------------------------------
    'pip install "$(ls resnest_plugin-*.whl)[deploy]"':
        "tests/test_deploy_venv.py::test_the_runner_works_in_a_venv_without_torch_or_openmmlab",
    "python -m resnest_plugin.deploy infer model.onnx image.jpg --boxes boxes.json --json keypoints.json "
    "--out drawn.png":
        "tests/test_deploy_runtime.py::test_cli_infer_writes_keypoints_json_and_a_drawing",
    "python -m resnest_plugin.deploy evaluate model.onnx --ann tests/data/coco/test_coco.json "
    "--images tests/data/coco":
        "tests/test_deploy_runtime.py::test_cli_evaluate_prints_the_ten_coco_metrics",
}


# --- reading the pages ---------------------------------------------------------------------

def doc_files() -> List[Path]:
    """README.md and every docs/*.md page."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([^\s`]*)")


def code_blocks(text: str) -> Iterator[Tuple[str, int, List[str]]]:
    """``(language, first line number, lines)`` of every fenced code block of a markdown text."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        fence, language = opening.group(1), opening.group(2).lower()
        start, body = index + 1, []
        index += 1
        while index < len(lines):
            stripped = lines[index].strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                break
            body.append(lines[index])
            index += 1
        yield language, start + 1, body
        index += 1


def split_comment(line: str) -> Tuple[str, str]:
    """Split a shell line at its first unquoted ``#`` that starts a word: ``(command, comment)``."""
    quote = ""
    for position, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"':
                continue
        elif char in "'\"":
            quote = char
        elif char == "#" and (position == 0 or line[position - 1].isspace()):
            return line[:position].rstrip(), line[position:]
    return line.rstrip(), ""


def normalise(command: str) -> str:
    """Collapse runs of whitespace, as the keys of :data:`TESTED_BY` are written."""
    return " ".join(command.split())


def shell_commands() -> List[Tuple[str, str, str]]:
    """``(where, command, trailing comment)`` of every command line of the pages' shell blocks."""
    found = []
    for path in doc_files():
        for language, first_line, body in code_blocks(path.read_text(encoding="utf-8")):
            if language not in SHELL_LANGUAGES:
                continue
            pending, pending_line = "", 0
            for offset, raw in enumerate(body):
                stripped = raw.strip()
                if not pending and (not stripped or stripped.startswith("#")):
                    continue
                if not pending:
                    pending_line = first_line + offset
                if stripped.endswith("\\"):
                    pending += stripped[:-1].strip() + " "
                    continue
                command, comment = split_comment(pending + stripped)
                pending = ""
                where = f"{path.relative_to(REPO)}:{pending_line}"
                found.append((where, normalise(command), comment))
            assert not pending, f"{path.relative_to(REPO)}: a block ends in a backslash continuation"
    return found


def is_marked(comment: str) -> bool:
    """Whether a trailing comment says the command needs a GPU or the full COCO."""
    return re.match(r"#\s*(%s)\b" % "|".join(re.escape(m) for m in MARKERS), comment) is not None


# --- the tests -------------------------------------------------------------------------------

def test_every_shell_command_is_tested_or_marked() -> None:
    commands = shell_commands()
    assert commands, "no shell commands found in README.md and docs/*.md"
    unaccounted = [f"{where}: {command}" for where, command, comment in commands
                   if not is_marked(comment) and command not in TESTED_BY]
    assert not unaccounted, (
        "commands neither run by a test (TESTED_BY in tests/test_docs.py) nor marked "
        "'# GPU' / '# full COCO':\n" + "\n".join(unaccounted))


def test_marked_commands_are_not_also_claimed_as_tested() -> None:
    both = [f"{where}: {command}" for where, command, comment in shell_commands()
            if is_marked(comment) and command in TESTED_BY]
    assert not both, "marked GPU/full-COCO-only but listed in TESTED_BY:\n" + "\n".join(both)


def test_tested_by_names_real_tests_and_no_key_is_stale() -> None:
    shown = {command for _, command, _ in shell_commands()}
    stale = [key for key in TESTED_BY if key not in shown]
    assert not stale, "TESTED_BY keys that no page shows any more:\n" + "\n".join(stale)
    problems = []
    for command, node in TESTED_BY.items():
        if command != normalise(command):
            problems.append(f"key not normalised: {command!r}")
        if node == CI:
            ci = REPO / CI
            if not ci.is_file() or command not in ci.read_text().splitlines():
                problems.append(f"{command!r}: {CI} has no line that runs it")
            continue
        file_name, _, function = node.partition("::")
        path = REPO / file_name
        if not function or not path.is_file():
            problems.append(f"{command!r}: {node} is not an existing test file::function")
            continue
        if not re.search(rf"^def {re.escape(function)}\(", path.read_text(), flags=re.MULTILINE):
            problems.append(f"{command!r}: {file_name} defines no test function {function}")
    assert not problems, "\n".join(problems)


def test_readme_is_short() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move reference material "
        "into docs/")


_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"`[^`\n]*`")


def _prose(text: str, keep_code: bool = False) -> str:
    """The text without fenced blocks and (unless ``keep_code``) inline code: links there are not links."""
    lines, inside = [], ""
    for line in text.splitlines():
        opening = _FENCE.match(line)
        if inside:
            stripped = line.strip()
            if stripped.startswith(inside) and not stripped.strip(inside[0]):
                inside = ""
            continue
        if opening:
            inside = opening.group(1)
            continue
        lines.append(line if keep_code else _INLINE_CODE.sub("", line))
    return "\n".join(lines)


def _anchors(path: Path) -> set:
    """GitHub's heading anchors of a markdown file."""
    anchors = set()
    for line in _prose(path.read_text(encoding="utf-8"), keep_code=True).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


def test_relative_links_point_to_existing_files() -> None:
    broken = []
    for page in doc_files():
        for target in _LINK.findall(_prose(page.read_text(encoding="utf-8"))):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (page.parent / file_part).resolve() if file_part else page
            where = f"{page.relative_to(REPO)}: ({target})"
            if not resolved.exists():
                broken.append(f"{where}: {resolved} does not exist")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{where}: no heading #{anchor} in {resolved.name}")
    assert not broken, "\n".join(broken)


DOC_PAGES = ("installation", "compatibility", "demo", "recipes", "distributed", "reproduction",
             "checkpoints-and-data-errors", "architecture", "benchmarks", "development")


def test_each_docs_page_exists_and_opens_with_what_it_is_for() -> None:
    problems = []
    for name in DOC_PAGES:
        path = REPO / "docs" / f"{name}.md"
        if not path.is_file():
            problems.append(f"{path.relative_to(REPO)} is missing")
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines or not lines[0].startswith("# "):
            problems.append(f"{path.relative_to(REPO)}: does not start with a '# ' title")
            continue
        body = [line for line in lines[1:] if line.strip()]
        if not body or body[0].startswith(("#", "|", "```", "-", "*", "<")):
            problems.append(f"{path.relative_to(REPO)}: the title is not followed by a paragraph")
    assert not problems, "\n".join(problems)
