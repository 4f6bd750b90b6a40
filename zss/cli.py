"""The `zss` command line: parse, call the library, print. No logic lives here.

Every command imports its library module lazily so `zss --help` stays fast and a missing optional
dependency only affects the command that needs it. User errors (`ZssError`) become one line on
stderr and exit code 2, never a traceback. A recipe's own commands (`zss import NAME`, `zss prompts
explain`) come from the registry in `zss.recipes` as plain declarations (`zss.utils.cli_spec`) and
become typer commands here.
"""

from __future__ import annotations

import sys
from inspect import Parameter, Signature
from pathlib import Path
from typing import Any, List, Optional

import typer

from zss.errors import ExitWith, ZssError
from zss.recipes import RECIPES
from zss.utils.cli_spec import Command, Param

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Open-vocabulary semantic segmentation without dense labels.")
concepts_app = typer.Typer(no_args_is_help=True, help="Build and query the faiss concept bank.")
app.add_typer(concepts_app, name="concepts")
import_app = typer.Typer(no_args_is_help=True, help="Import checkpoints released by a method's authors.")
data_app = typer.Typer(no_args_is_help=True, help="Benchmark data: official downloads -> what zss eval reads.")
app.add_typer(data_app, name="data")


def _typer_param(param: Param) -> Any:
    """The typer Argument (no flags: required, positional) or Option a declared parameter stands for."""
    if not param.flags:
        return typer.Argument(..., help=param.help)
    return typer.Option(param.default, *param.flags, help=param.help, min=param.min)


def _add_command(group: typer.Typer, command: Command) -> None:
    """Register a declared command on `group`: typer parses its parameters, we print what it returns."""
    def callback(**values: Any) -> None:
        typer.echo(command.run(**values))

    callback.__signature__ = Signature(  # type: ignore[attr-defined]
        [Parameter(p.name, Parameter.KEYWORD_ONLY, default=_typer_param(p), annotation=p.type)
         for p in command.params])
    callback.__annotations__ = {p.name: p.type for p in command.params}
    callback.__doc__ = command.help
    group.command(command.name)(callback)


def _add_recipe_commands() -> None:
    """Each recipe's command groups (`zss prompts`), then `zss import NAME` for every recipe with a
    release importer, in name order."""
    groups: dict[str, typer.Typer] = {}
    for entry in RECIPES.values():
        for group in entry.groups:
            if group.name not in groups:
                groups[group.name] = typer.Typer(no_args_is_help=True, help=group.help)
                app.add_typer(groups[group.name], name=group.name)
            for command in group.commands:
                _add_command(groups[group.name], command)
    for command in sorted((e.importer for e in RECIPES.values() if e.importer), key=lambda c: c.name):
        _add_command(import_app, command)
    app.add_typer(import_app, name="import")


_add_recipe_commands()


@app.callback()
def _global_options(verbose: int = typer.Option(0, "-v", "--verbose", count=True,
                                                help="More log detail (debug messages; a progress line "
                                                "for every step when stderr is a file)."),
                    quiet: bool = typer.Option(False, "-q", "--quiet",
                                               help="Only warnings and errors: no progress bar or lines."),
                    progress_seconds: Optional[float] = typer.Option(
                        None, "--progress-seconds", min=0, help="When stderr is a file: at most one progress "
                        "line per N seconds, plus the first and the last (default 30, or $ZSS_PROGRESS_SECONDS)."),
                    ) -> None:
    """Open-vocabulary semantic segmentation without dense labels.

    Progress: a bar on a terminal; when stderr is a file, the first and the last progress line and at
    most one every 30 s between them (--progress-seconds, -v for every step).
    """
    from zss.utils.logs import setup_logging
    from zss.utils.progress import set_pace

    setup_logging(verbose=verbose, quiet=quiet)
    set_pace(progress_seconds)


@app.command()
def synth(out: Path = typer.Argument(..., help="Output folder of the synthetic world."),
          n_images: int = typer.Option(64, "--n-images", min=1, help="Training images."),
          n_val: int = typer.Option(16, "--n-val", min=1, help="Validation images."),
          size: int = typer.Option(224, "--size", min=32, help="Nominal image side in pixels."),
          seed: int = typer.Option(0, "--seed")) -> None:
    """Write the synthetic world: images, captions, SA-1B masks, webdataset tars, val ground truth."""
    from zss.synth.world import make_world

    info = make_world(out, n_train=n_images, n_val=n_val, size=size, seed=seed)
    typer.echo(f"synthetic world in {out}: {info['n_train']} train, {info['n_val']} val images, "
               f"{len(info['classes'])} classes")


@app.command()
def ingest(source: str = typer.Argument(..., help="Source path; kind inferred or given as KIND:PATH "
                                        "(coco, sa1b, webdataset, folder)."),
           out: str = typer.Argument(..., help="Output shard folder or URL (s3://BUCKET/PREFIX, gs://..., "
                                     "any fsspec URL)."),
           preset: Optional[Path] = typer.Option(None, "--preset", help="YAML preset (zss/manifests/presets)."),
           features: Optional[str] = typer.Option(None, "--features", help="NAME[:CKPT] frozen backbone."),
           img_size: Optional[int] = typer.Option(None, "--img-size", help="Backbone input side."),
           masks: Optional[str] = typer.Option(None, "--masks", help="sam | sa1b | dino | feature-kmeans | none"),
           sam_checkpoint: Optional[str] = typer.Option(None, "--sam-checkpoint", help="KIND:PATH"),
           concepts: Optional[str] = typer.Option(None, "--concepts", help="Concept bank JSON or class-list names."),
           shard_size: Optional[int] = typer.Option(None, "--shard-size", min=1),
           workers: Optional[int] = typer.Option(None, "--workers", min=1),
           address: Optional[str] = typer.Option(None, "--address", help="Join this Ray cluster."),
           mode: Optional[str] = typer.Option(None, "--mode", help="incremental | overwrite"),
           limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N samples."),
           no_images: bool = typer.Option(False, "--no-images", help="Do not store resized JPEGs."),
           views: Optional[int] = typer.Option(None, "--views", help="Views per image: 1 = the image; "
                                               "V > 1 adds V-1 seeded random-resized crops (decode.views)."),
           set_: List[str] = typer.Option([], "--set", help="Config override key=value (repeatable)."),
           ) -> None:
    """Compute masks, frozen patch features and caption concepts once, into resumable shards."""
    from zss.ingest.runner import run_ingest

    summary = run_ingest(source=source, out=out, preset=preset, features=features, img_size=img_size,
                         masks=masks, sam_checkpoint=sam_checkpoint, concepts=concepts,
                         shard_size=shard_size, workers=workers, address=address, mode=mode,
                         limit=limit, store_images=False if no_images else None, overrides=set_,
                         views=views)
    typer.echo(summary)


@app.command()
def inspect(shards: str = typer.Argument(..., help="Shard folder or URL written by `zss ingest`."),
            verify: bool = typer.Option(False, "--verify", help="Check every shard against its recorded "
                                        "sha256; list the damaged ones (exit 3).")) -> None:
    """Manifest summary, status counts and one decoded sample."""
    from zss.ingest.inspect import inspect_shards, verify_shards

    typer.echo(verify_shards(shards) if verify else inspect_shards(shards))


@app.command()
def train(recipe: str = typer.Argument(..., help=" | ".join(RECIPES)),
          shards: str = typer.Argument(..., help="Shard folder or URL (s3://..., any fsspec URL)."),
          run: Path = typer.Argument(..., help="Run directory."),
          config: Optional[Path] = typer.Option(None, "--config", help="YAML config."),
          steps: Optional[int] = typer.Option(None, "--steps", min=1),
          epochs: Optional[float] = typer.Option(None, "--epochs"),
          resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
          local_target: Optional[str] = typer.Option(
              None, "--local-target", help="SimZSS local-loss target: own (default) | argmax (authors' code)."),
          set_: List[str] = typer.Option([], "--set", help="Config override key=value (repeatable)."),
          ) -> None:
    """Train a recipe on cached shards into RUN/ (checkpoints, metrics, final model/)."""
    from zss.commands.train import run_training

    overrides = list(set_) + ([f"recipe.local_target={local_target}"] if local_target else [])
    typer.echo(run_training(recipe=recipe, shards=shards, run_dir=run, config=config, steps=steps,
                            epochs=epochs, resume=resume, overrides=overrides))


@app.command("eval")
def eval_(model: str = typer.Argument(..., help="Model directory or openclip:ARCH[:CKPT]."),
          benchmark: str = typer.Option(..., "--benchmark",
                                        help="Benchmark name, 'all', or 'folder' (your own labelled data)."),
          data_root: Path = typer.Option(..., "--data-root", help="Folder holding the benchmark data."),
          protocol: Optional[str] = typer.Option(
              None, "--protocol", help="sclip | clearclip | proxyclip | naclip | talk2dino | pixelclip | zss | all "
              "(default: sclip; zss for synth/folder)."),
          out: Optional[Path] = typer.Option(None, "--out", help="Results folder."),
          save_predictions: bool = typer.Option(False, "--save-predictions"),
          limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N images."),
          set_: List[str] = typer.Option([], "--set", help="Protocol override key=value."),
          vocab: Optional[str] = typer.Option(None, "--vocab", help="auto | auto:FILE: name each image from a "
                                              "name bank and score the names against the benchmark's classes "
                                              "(docs/auto-vocab.md)."),
          ) -> None:
    """Score a model on standard benchmarks (mIoU, aAcc, per class)."""
    from zss.eval.evaluate import run_eval

    typer.echo(run_eval(model=model, benchmark=benchmark, data_root=data_root, protocol=protocol,
                        out=out, save_predictions=save_predictions, limit=limit, overrides=set_, vocab=vocab))


@app.command()
def segment(model: str = typer.Argument(..., help="Model directory or openclip:ARCH[:CKPT]."),
            image: Path = typer.Argument(..., help="An image or a folder of images."),
            vocab: Optional[str] = typer.Option(None, "--vocab", help='Classes: "," between classes, ";" between '
                                                'synonyms ("zebra, traffic cone, wet asphalt;road" = 3 classes), or '
                                                'auto / auto:FILE: names chosen per image from a name bank.'),
            vocab_file: Optional[Path] = typer.Option(None, "--vocab-file", help="One class per line, \";\" "
                                                      "between synonyms."),
            out: Path = typer.Option(Path("segment_out"), "--out"),
            set_: List[str] = typer.Option([], "--set", help="Inference override key=value."),
            ) -> None:
    """Segment your own images with any words: label PNG, overlay PNG and per-class areas."""
    from zss.eval.segment import run_segment

    typer.echo(run_segment(model=model, inputs=image, vocab=vocab, vocab_file=vocab_file, out=out,
                           overrides=set_))


@concepts_app.command("build")
def concepts_build(out: Path = typer.Argument(..., help="Output concepts.json (or, with --from, the name bank)."),
                   lists: List[str] = typer.Option([], "--list", help="Class lists (zss/manifests/classes) or "
                                                   "files (default: voc, context, coco_stuff, ade20k, cityscapes)."),
                   text_encoder: Optional[str] = typer.Option(None, "--text-encoder",
                                                              help="open_clip ARCH[:CKPT] for the faiss index."),
                   source: Optional[str] = typer.Option(None, "--from", help="wordnet[:DIR]: build the "
                                                        "--vocab auto name bank (.tsv.gz) from WordNet 3.0."),
                   ) -> None:
    """Build a concept bank (+ faiss index of text embeddings) from class-name lists, or (--from
    wordnet) the name bank `--vocab auto` searches."""
    if source is not None:
        if lists or text_encoder:
            raise ZssError("--from builds a name bank; --list and --text-encoder build a concept bank: give one")
        from zss.ingest.wordnet_bank import build_from_source_cli

        typer.echo(build_from_source_cli(source, out))
        return
    from zss.ingest.concept_bank import build_bank_cli

    typer.echo(build_bank_cli(out=out, lists=lists or ["voc", "context", "coco_stuff", "ade20k", "cityscapes"],
                              text_encoder=text_encoder))


@concepts_app.command("lookup")
def concepts_lookup(bank: Path = typer.Argument(..., help="concepts.json (with its faiss index)."),
                    words: List[str] = typer.Argument(..., help="Phrases to look up."),
                    k: int = typer.Option(5, "-k", min=1),
                    text_encoder: Optional[str] = typer.Option(None, "--text-encoder")) -> None:
    """Nearest concept-bank entries of phrases."""
    from zss.ingest.concept_bank import lookup_cli

    typer.echo(lookup_cli(bank=bank, words=words, k=k, text_encoder=text_encoder))


@data_app.command("prepare")
def data_prepare(name: str = typer.Argument(..., metavar="NAME", help="coco_stuff | coco_object | context | cityscapes | "
                                            "voc | ade20k (the last two: checked, need no conversion)."),
                 raw: Path = typer.Argument(..., metavar="RAW_DIR", help="The official archives, extracted as their instructions "
                                            "say (docs/eval.md)."),
                 out: Optional[Path] = typer.Argument(None, metavar="OUT", help="Data root to write (zss eval --data-root)."),
                 ) -> None:
    """Convert a benchmark's official download into the layout `zss eval --data-root` reads (resumable)."""
    from zss.eval.prepare import run_prepare

    typer.echo(run_prepare(name, raw, out))


@app.command()
def serve(models: List[str] = typer.Argument(..., help="Model directories or openclip:ARCH:CKPT (several: compare)."),
          host: str = typer.Option("127.0.0.1", "--host"),
          port: int = typer.Option(7860, "--port", min=0, max=65535),
          max_side: int = typer.Option(1024, "--max-side", help="Uploads are downscaled to this long side."),
          set_: List[str] = typer.Option([], "--set", help="Inference override key=value."),
          name_bank: Optional[str] = typer.Option(None, "--name-bank", help="Names for the page's \"name it for "
                                                  "me\" switch: auto (the shipped WordNet bank) or FILE."),
          max_queue: int = typer.Option(8, "--max-queue", min=1, help="Requests inside at once (one runs, the "
                                        "rest wait); more get 503 + Retry-After and the page retries."),
          prepare_names: bool = typer.Option(False, "--prepare-names", help="Load or build each model's name "
                                             "index at start, in the background, so the first \"name it for me\" "
                                             "answer does not wait minutes for it."),
          ) -> None:
    """A local web page: upload an image, type words, see the overlay, areas and label PNG."""
    from zss.serve.app import run_server

    run_server(list(models), host=host, port=port, max_side=max_side, overrides=set_, announce=typer.echo,
               name_bank=name_bank, max_queue=max_queue, prepare_names=prepare_names)


@app.command()
def demo(out: Path = typer.Option(Path("demo_out"), "--out"),
         steps: int = typer.Option(300, "--steps", min=1),
         n_images: int = typer.Option(160, "--n-images", min=1,
                                       help="Training images (at least the demo's batch size, 64).")) -> None:
    """synth -> ingest -> train simzss -> eval -> segment, on CPU, offline, in minutes."""
    from zss.commands.demo import run_demo

    typer.echo(run_demo(out=out, steps=steps, n_images=n_images))


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one line on stderr and exit 2 for user errors."""
    try:
        code = app(args=argv, standalone_mode=False)  # typer returns 130 on Ctrl-C
    except ExitWith as exc:  # interrupted (130/143) or some items failed (3): docs/reliability.md
        print(f"zss: {exc}", file=sys.stderr)
        return exc.code
    except ZssError as exc:
        print(f"zss: error: {exc}", file=sys.stderr)
        return 2
    except (typer.Exit, SystemExit) as exc:  # --help, explicit exits
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        return int(code or 0)
    except typer.Abort:
        print("zss: aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("zss: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # usage errors (bad option value, missing argument)
        # typer >= 0.2x ships its own copy of click; older ones raise click's own exceptions.
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            print(f"zss: error: {exc.format_message()}", file=sys.stderr)
            return int(exc.exit_code or 2)
        raise
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
