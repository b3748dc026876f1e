"""Regenerate a pretrained ensemble shipped in the package (``tbotan models``).

    OMP_NUM_THREADS=1 python scripts/train_pretrained.py kalj-T0.44 \
        --botan-data $TBOTAN_BOTAN_DATA \
        --held-out $TBOTAN_PYG_BOTAN/small_data/T0.44/train \
                   $TBOTAN_PYG_BOTAN/small_data/T0.44/test \
        [--work build/pretrained] [--twin-seeds 0]

    snakemake --workflow-profile profiles/laptop --cores 2 \
        --configfile config.yaml config/reduced.yaml
    OMP_NUM_THREADS=1 python scripts/train_pretrained.py kalj-mixed-T --run results/reduced

Options of both: ``--registry DIR`` (default ``src/tbotan/data/models``): where the entry
``DIR/<name>/`` is written (a scratch folder for a trial packaging).

**kalj-T0.44** (trained here on the public BOTAN data).  Steps (each skipped when its result
exists, so an interrupted run resumes where it stopped):

1. ``tbotan import-botan`` of the five public BOTAN files 1-5 (training) and of the held-out
   files (``--held-out``: files or folders of ``.npz``; files byte-identical to a training file
   are dropped, so pyg_botan's ``small_data/T0.44/train`` (files 1-10) gives files 6-10);
2. ``tbotan train --config config.yaml config/botan.yaml --seed k`` for the seeds of the model
   (0-4; a killed training resumes from its checkpoint), on one thread;
3. evaluation of every member and of the ensemble on the held-out and the training files (node
   Pearson ρ with C_B and, with its sign, with the propensity, edge ρ), beside the ridge
   baseline (:mod:`tbotan.learning.baselines`) fitted on the same five files;
4. the propensity twin (``model.node_target: propensity``, ``--twin-seeds``): trained and
   evaluated the same way, shipped only if its held-out ρ(propensity) beats the ridge
   baseline of the propensity; otherwise its numbers go into the main model's card;
5. the members (float32 weights, no optimiser state) and ``card.json`` / ``card.md`` written into
   ``src/tbotan/data/models/<name>/`` (``--registry``).

**kalj-mixed-T** (packed from a finished pipeline run, trained there): the reduced study's
main model (``is+ts`` at its ``training.lambda_global``, every seed of ``training.seeds``:
``tbotan.config.model_ids``), trained on T = 0.64, 0.72, 0.80, 1.00 together at N = 1000.
``--run`` (default ``results/reduced``) is the run folder; ``--run-config`` the configuration
files the run was given (default ``config.yaml config/reduced.yaml``, resolved against the
current folder, else this repository), checked against the run's resolved ``config.yaml`` so
that the card's regeneration command is the run's.  Steps:

1. the run's files are checked: ``models/<id>/model.pt`` of every main-model seed and
   ``datasets/T<T>_{train,validation}.h5`` of the trained, ``datasets/T<T>_test.h5`` of every
   temperature; the missing ones are named and nothing is written;
2. the members are packed (float32, no optimiser state) into ``<registry>/kalj-mixed-T/``;
3. evaluation on the run's test splits of every temperature (configurations used neither in
   training nor in validation), per temperature, of the ensemble (the members' mean,
   ``tbotan.learning.ensemble.combine_members``, what ``tbotan predict`` writes) and of every
   member: node Pearson ρ with C_B over the A particles (mean over configurations and the
   worst one), with the propensity, the edge ρ, mean T_pred and T_pred / T;
4. beside them the pipeline's own baselines (``tbotan.analysis.runs.run_baselines``), fitted on
   the run's training split only (ridge penalty chosen on its validation split): the ridge
   regression of C_B on local structure and the quadratic fit of T on U/N;
5. the card: the run's configuration files and resolved-configuration hash, the members'
   commit and package versions, the training recipe, the CPU seconds of the run from its
   ``benchmarks/`` files, the regeneration commands (the Snakemake command, then this one) and
   the applicability range (N, density, composition of the training data; the trained and the
   untrained tested temperatures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tbotan.learning.pretrained import sha256

ROOT = Path(__file__).resolve().parents[1]

#: The recipes of the shipped models: configuration overlays (relative to the repository root),
#: the training files' indices and the seeds.
MODELS = {
    "kalj-T0.44": {
        "description": "T-BOTAN (is+ts, H = 64, 7 message-passing steps) trained on the five "
        "public BOTAN configurations of the Kob-Andersen LJ mixture at T = 0.44, N = 4096, "
        "rho = 1.2: predicts C_B (bond-breaking) per particle, the edge labels and T",
        "config": ["config.yaml", "config/botan.yaml"],
        "overlay": None,
        "train_files": [1, 2, 3, 4, 5],
        "seeds": [0, 1, 2, 3, 4],
        "twin": "kalj-T0.44-propensity",
        "shipped": True,
    },
    "kalj-T0.44-propensity": {
        "description": "the propensity twin of kalj-T0.44 (model.node_target: propensity)",
        "config": ["config.yaml", "config/botan.yaml"],
        "overlay": {"model": {"node_target": "propensity"}},
        "train_files": [1, 2, 3, 4, 5],
        "seeds": [0, 1, 2, 3, 4],
        "twin": None,
        "shipped": False,
    },
    # packed from a finished pipeline run (--run) rather than trained here: its members are
    # the run's main-model seeds, its scores those on the run's test splits
    "kalj-mixed-T": {
        "description": None,  # from the run: pretrained.run_description
        "config": ["config.yaml", "config/reduced.yaml"],
        "run": "results/reduced",
        "pipeline": "snakemake --workflow-profile profiles/laptop --cores 2",
        "twin": None,
        "shipped": True,
    },
}
#: The working folder of this run (set by main).
WORK = Path("build/pretrained")
BOX = 15.05658
TEMPERATURE = 0.44
BOTAN_NAME = "isoconfig_N4096T0.44_{}_tc07.npz"
#: The largest member file shipped (issue 26: model files ≤ 5 MB each).
MAX_BYTES = 5 * 1024 * 1024


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tbotan(*args: str) -> float:
    """Run ``tbotan ARGS`` (one thread); returns its CPU seconds (user + system)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    before = child_cpu_seconds()
    log("tbotan " + " ".join(args))
    subprocess.run([sys.executable, "-m", "tbotan", *args], check=True, cwd=ROOT, env=env)
    return child_cpu_seconds() - before


def shown(arg: str) -> str:
    """A command argument as the card shows it, free of this machine's folders: the working
    folder ``WORK/``, the repository root dropped, the BOTAN files ``$TBOTAN_BOTAN_DATA/``, a
    pyg_botan checkout's files ``$TBOTAN_PYG_BOTAN/small_data/...``; ``--out`` (the former
    spelling) as ``--output``."""
    if arg == "--out":
        return "--output"
    if arg.endswith(".npz") and "/small_data/" in arg:
        return "$TBOTAN_PYG_BOTAN/small_data/" + arg.split("/small_data/", 1)[1]
    if arg.endswith(".npz"):
        return "$TBOTAN_BOTAN_DATA/" + Path(arg).name
    return arg.replace(str(WORK) + "/", "WORK/").replace(str(ROOT) + "/", "")


def shown_command(command: str) -> str:
    """A recorded command line with every argument :func:`shown` (arguments hold no spaces)."""
    return " ".join(shown(a) for a in command.split(" "))


def held_out_files(paths: list[str], training: dict[str, Path]) -> list[Path]:
    """The held-out ``.npz`` files of ``paths`` (files or folders), without any file
    byte-identical to a training file (``training``: {sha256: path})."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(p.glob("*.npz"), key=lambda f: (len(f.name), f.name)))
        elif p.is_file():
            found.append(p)
        else:
            raise SystemExit(f"--held-out: {p} is neither a file nor a folder")
    kept: dict[str, Path] = {}
    for f in found:
        digest = sha256(f)
        if digest in training:
            log(f"held-out: {f} is byte-identical to the training file {training[digest]}: dropped")
        elif digest not in kept:
            kept[digest] = f
    if not kept:
        raise SystemExit("--held-out: no file left that is not a training file")
    return list(kept.values())


def import_files(files: list[Path], out: Path, split: str, config: list[str]) -> dict:
    """``tbotan import-botan`` of ``files`` into ``out`` (skipped when it exists)."""
    record = out.with_suffix(".json")
    if out.is_file() and record.is_file():
        log(f"{out}: exists")
        return json.loads(record.read_text())
    args = [
        "import-botan",
        *map(str, files),
        "--box",
        str(BOX),
        "--temperature",
        str(TEMPERATURE),
        "--engine",
        "torch",
        "--device",
        "cpu",
        "--split",
        split,
        "--output",
        str(out),
        "--config",
        *config,
    ]
    cpu = tbotan(*args)
    info = {
        "command": "tbotan " + " ".join(shown(a) for a in args),
        "cpu_s": round(cpu, 1),
        "files": [{"name": f.name, "sha256": sha256(f)} for f in files],
    }
    record.write_text(json.dumps(info, indent=1))
    return info


def train_seed(folder: Path, train_h5: Path, seed: int, config: list[str]) -> dict:
    """``tbotan train`` of one seed into ``folder`` (skipped when its model exists; a
    checkpoint left by an interrupted run is resumed).  CPU seconds accumulate over runs."""
    record = folder / "run.json"
    if (folder / "model.pt").is_file() and record.is_file():
        log(f"{folder}: trained")
        return json.loads(record.read_text())
    previous = json.loads(record.read_text())["cpu_s"] if record.is_file() else 0.0
    args = [
        "train",
        "--train",
        str(train_h5),
        "--output",
        str(folder),
        "--seed",
        str(seed),
        "--device",
        "cpu",
        "--resume",
        "--no-progress",
        "--config",
        *config,
    ]
    folder.mkdir(parents=True, exist_ok=True)
    start = time.time()
    cpu = tbotan(*args)
    info = {
        "command": "tbotan " + " ".join(shown(a) for a in args),
        "cpu_s": round(previous + cpu, 1),
        "wall_s": round(time.time() - start, 1),
        "seed": seed,
    }
    record.write_text(json.dumps(info, indent=1))
    return info


def config_path(name: str) -> Path:
    """A configuration file of a run: relative to the current folder (the checkout the run was
    made in) where it is there, else to this repository."""
    here = Path(name)
    return here if here.is_file() else ROOT / name


def config_differences(a, b, where: str = "") -> list[str]:
    """The dotted keys at which two configurations differ (at most the first 10)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            path = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                out.append(path)
            else:
                out.extend(config_differences(a[key], b[key], path))
        return out[:10]
    return [] if a == b else [where or "(top level)"]


def run_configuration(run: Path, overlays: list[str]) -> dict:
    """The resolved configuration of a run, checked to be that of ``overlays`` (so that the
    card's regeneration command is the run's)."""
    from tbotan import config as cfgmod
    from tbotan.analysis.runs import load_run_config

    resolved = run / "config.yaml"
    if not run.is_dir():
        raise SystemExit(f"--run {run}: no such folder (run the pipeline first)")
    if not resolved.is_file():
        raise SystemExit(
            f"--run {run}: no config.yaml (the resolved configuration every pipeline run "
            "writes): not a pipeline run folder"
        )
    config = load_run_config(resolved)
    missing = [c for c in overlays if not config_path(c).is_file()]
    if missing:
        raise SystemExit(f"--run-config: {', '.join(missing)} not found")
    expected = cfgmod.load([config_path(c) for c in overlays], check_engine=False)
    differences = config_differences(config, expected)
    if differences:
        raise SystemExit(
            f"--run {run}: its configuration ({resolved}) is not that of {' '.join(overlays)} "
            f"(it differs in {', '.join(differences)}); pass the run's configuration files "
            "with --run-config, in the order the run was given them"
        )
    return config


def package_run(args, spec: dict) -> None:
    """Pack a finished pipeline run's main-model seeds into the registry with their card."""
    import torch

    from tbotan.analysis.runs import run_baselines
    from tbotan.errors import InputError
    from tbotan.learning import pretrained

    run = Path(args.run)
    overlays = args.run_config or spec["config"]
    config = run_configuration(run, overlays)
    try:
        inputs = pretrained.run_inputs(run, config)
    except InputError as exc:
        raise SystemExit(f"--run: {exc}") from None
    if config["run_name"] != Path(spec["run"]).name:
        log(f"note: run {config['run_name']!r}, not the recipe's {spec['run']} (a test packaging?)")
    from tbotan.formats.model_file import read_model_file

    train_names = sorted(p.name for p in inputs["train"].values())
    for path in inputs["models"]:
        recorded = sorted(Path(f).name for f in read_model_file(path)["train_files"])
        if recorded != train_names:
            raise SystemExit(
                f"--run: {path} was trained on {', '.join(recorded)}, not on the run's "
                f"training files {', '.join(train_names)} (a stale model: rerun the pipeline)"
            )
    log(
        f"{run}: members {', '.join(inputs['model_ids'])}; test splits of T = "
        f"{', '.join(inputs['test'])} (trained {', '.join(inputs['trained'])})"
    )
    folder = Path(args.registry) / args.name
    if folder.exists():
        shutil.rmtree(folder)
    members = pretrained.pack_members(inputs["models"], folder)
    for path in members:
        if path.stat().st_size > MAX_BYTES:
            raise SystemExit(f"{path}: {path.stat().st_size} bytes, above the {MAX_BYTES} limit")
    log("evaluating the ensemble and its members on the test splits")
    evaluation = pretrained.evaluate_temperatures(members, inputs["test"], inputs["trained"])
    log("fitting the baselines on the training split")
    notes: list[str] = []
    baselines = run_baselines(run, config, list(inputs["test"]), "test", notes)
    if baselines is None:
        raise SystemExit(f"--run {run}: no baselines: {'; '.join(notes)}")
    fits = pretrained.attach_run_baselines(evaluation, baselines)
    shown_run = (
        str(run.resolve().relative_to(Path.cwd()))
        if run.resolve().is_relative_to(Path.cwd())
        else str(run)
    )
    package = f"OMP_NUM_THREADS=1 python scripts/train_pretrained.py {args.name} --run {shown_run}"
    if overlays != spec["config"]:
        package += " --run-config " + " ".join(overlays)
    commands = {
        "pipeline": f"{spec['pipeline']} --configfile {' '.join(overlays)}",
        "package": package,
    }
    card = pretrained.build_run_card(
        args.name,
        pretrained.run_description(read_model_file(members[0]), config),
        members,
        config,
        inputs,
        evaluation,
        fits,
        pretrained.benchmark_cpu_seconds(run, inputs["model_ids"]),
        commands,
        overlays,
        python=platform.python_version(),
        torch=torch.__version__,
        script=package,
    )
    pretrained.write_registry_entry(folder, card)
    log(f"written {folder}")
    print(pretrained.summary_line(card))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=[n for n, m in MODELS.items() if m["shipped"]])
    parser.add_argument(
        "--botan-data", help="folder of the BOTAN files 1-5 (kalj-T0.44; required there)"
    )
    parser.add_argument(
        "--held-out",
        nargs="+",
        help="held-out .npz files or folders of them (kalj-T0.44; required there)",
    )
    parser.add_argument(
        "--run",
        help="a finished pipeline run folder to pack (kalj-mixed-T; default results/reduced)",
    )
    parser.add_argument(
        "--run-config",
        nargs="+",
        help="the configuration files the run was made with (kalj-mixed-T; default "
        "config.yaml config/reduced.yaml): checked against the run's config.yaml",
    )
    parser.add_argument("--work", default="build/pretrained", help="working folder")
    parser.add_argument(
        "--registry", default=str(ROOT / "src/tbotan/data/models"), help="where models go"
    )
    parser.add_argument(
        "--twin-seeds",
        nargs="*",
        type=int,
        default=[0],
        help="seeds of the propensity twin (none: skip it)",
    )
    parser.add_argument(
        "--train-only", action="store_true", help="import and train only (no evaluation)"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    spec = MODELS[args.name]
    if "run" in spec:
        if args.botan_data or args.held_out or args.train_only:
            parser.error(
                f"{args.name} is packed from a pipeline run: give --run (no BOTAN data, no "
                "--train-only: the pipeline trains it)"
            )
        args.run = args.run or spec["run"]
        package_run(args, spec)
        return
    if args.run or args.run_config:
        parser.error(f"{args.name} trains on the BOTAN data: --run and --run-config do not apply")
    if not args.botan_data or not args.held_out:
        parser.error(f"{args.name} needs --botan-data and --held-out")
    global WORK
    WORK = Path(args.work).resolve()
    work = WORK / args.name
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.botan_data)
    train_npz = [data / BOTAN_NAME.format(k) for k in spec["train_files"]]
    for f in train_npz:
        if not f.is_file():
            raise SystemExit(f"--botan-data: {f} not found")
    training = {sha256(f): f for f in train_npz}
    held_npz = held_out_files(args.held_out, training)
    log(f"training files: {[f.name for f in train_npz]}; held out: {[f.name for f in held_npz]}")
    config = [str(ROOT / c) for c in spec["config"]]
    imports = {
        "train": import_files(train_npz, work / "train.h5", "train", config),
        "held_out": import_files(held_npz, work / "held_out.h5", "test", config),
    }
    for info in imports.values():
        info["command"] = shown_command(info["command"])
    runs = {}
    for seed in spec["seeds"]:
        runs[seed] = train_seed(work / f"seed{seed}", work / "train.h5", seed, config)
    twin_runs = {}
    if spec["twin"] and args.twin_seeds:
        twin = MODELS[spec["twin"]]
        overlay = work / f"{spec['twin']}.yaml"
        import yaml

        overlay.write_text(yaml.safe_dump(twin["overlay"]))
        twin_config = [str(ROOT / c) for c in twin["config"]] + [str(overlay)]
        for seed in args.twin_seeds:
            twin_runs[seed] = train_seed(
                work / f"twin_seed{seed}", work / "train.h5", seed, twin_config
            )
    for info in [*runs.values(), *twin_runs.values()]:
        info["command"] = shown_command(info["command"])
    if args.train_only:
        return
    from tbotan.checks.benchmark import cpu_model
    from tbotan.learning import pretrained

    common = dict(
        cpu_model=cpu_model(),
        threads=1,
        python=platform.python_version(),
        torch=torch.__version__,
        script=f"OMP_NUM_THREADS=1 python scripts/train_pretrained.py {args.name} "
        "--botan-data $TBOTAN_BOTAN_DATA --held-out $TBOTAN_PYG_BOTAN/small_data/T0.44/train "
        "$TBOTAN_PYG_BOTAN/small_data/T0.44/test",
    )
    registry = Path(args.registry)
    log("evaluating the ensemble and the ridge baselines")
    members = pretrained.pack_members(
        [work / f"seed{s}" / "model.pt" for s in spec["seeds"]], registry / args.name
    )
    sets = dict(train_h5=work / "train.h5", held_out_h5=work / "held_out.h5", imports=imports)
    card = pretrained.build_card(args.name, spec["description"], members, runs, **sets, **common)
    sets["ridge"] = {
        key: card["evaluation"][key]["ridge"] for key in ("held_out", "training_files")
    }
    if twin_runs:
        log("evaluating the propensity twin")
        twin_folder = registry / spec["twin"]
        if twin_folder.exists():
            shutil.rmtree(twin_folder)
        twin_members = pretrained.pack_members(
            [work / f"twin_seed{s}" / "model.pt" for s in args.twin_seeds], twin_folder
        )
        twin_card = pretrained.build_card(
            spec["twin"],
            MODELS[spec["twin"]]["description"],
            twin_members,
            twin_runs,
            **sets,
            **common,
        )
        verdict = pretrained.twin_verdict(twin_card)
        card["propensity_twin"] = verdict
        log(f"propensity twin: {verdict['decision']}")
        if verdict["shipped"]:
            pretrained.write_registry_entry(twin_folder, twin_card)
        else:
            (work / "twin_card.json").write_text(json.dumps(twin_card, indent=1))
            shutil.rmtree(twin_folder)
    pretrained.write_registry_entry(registry / args.name, card)
    log(f"written {registry / args.name}")


if __name__ == "__main__":
    main()
