"""A local model (EMBEDDING_LOCAL_MODEL): a sentence-transformers folder run in-process.

tests/fixtures/tiny-bert is a small random BERT saved by sentence-transformers, with the
vectors sentence-transformers computed from it (expected.json, made by its make.py): our
NumPy encoder must give the same. Then the product's path on SQLite and Postgres: the embed
command stores vectors in the local space (the model's beside the offline words), a
reader's description is embedded by the model, ratings change the next preview, and a
broken folder is refused at start with the reason.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from safetensors.numpy import load_file, save_file
from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter.cards.summarize import summarize_pending
from newsletter.cli import main
from newsletter.config import ConfigError, Settings, load_settings
from newsletter.ingest.paper import Paper
from newsletter.ingest.store import ingest_files
from newsletter.relevance import local_model, vectors
from newsletter.relevance.embed import embed_pending
from newsletter.relevance.embedders import LocalEmbedder, space_for
from newsletter.relevance.tables import PaperVector, ReaderModelRow
from newsletter.web import create_app
from tests.conftest import ARXIV_FIXTURES, LOCAL_FIXTURES

TINY = LOCAL_FIXTURES / "tiny-bert"
EXPECTED = json.loads((TINY / "expected.json").read_text())


def tiny_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-bert"
    shutil.copytree(TINY, folder, ignore=shutil.ignore_patterns("make.py", "expected.json"))
    return folder


def assert_like_sentence_transformers(found: np.ndarray) -> None:
    expected = np.array(EXPECTED["vectors"], dtype=np.float32)
    assert found.shape == expected.shape
    assert np.abs(found - expected).max() < 1e-5


def test_vectors_match_sentence_transformers() -> None:
    model = local_model.load(TINY)
    found = model.encode(EXPECTED["texts"])
    assert_like_sentence_transformers(found)
    assert np.allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-6)
    # The long text was cut to the 24 tokens the model reads, as sentence-transformers cuts it.
    assert model.info.max_tokens == 24
    assert len(model.tokenizer.encode(EXPECTED["texts"][4]).ids) == 24
    assert model.encode([]).shape == (0, model.info.dims)


def test_the_older_folder_layout_and_prefixed_weights_give_the_same_vectors(
        tmp_path: Path) -> None:
    # sentence-transformers before version 5 wrote other module names, pooling flags and
    # the token limit in sentence_bert_config.json; a BertFor... checkpoint prefixes "bert.".
    folder = tiny_copy(tmp_path)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"}]))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 24, "do_lower_case": False}))
    (folder / "tokenizer_config.json").unlink()
    weights = load_file(folder / "model.safetensors")
    save_file({f"bert.{key}": value for key, value in weights.items()},
              folder / "model.safetensors")
    assert_like_sentence_transformers(local_model.load(folder).encode(EXPECTED["texts"]))


def test_new_weights_are_a_new_vector_model(tmp_path: Path) -> None:
    folder = tiny_copy(tmp_path)
    before = local_model.identity(folder)
    weights = load_file(folder / "model.safetensors")
    weights["embeddings.LayerNorm.bias"] = weights["embeddings.LayerNorm.bias"] + 0.5
    save_file(weights, folder / "model.safetensors")
    after = local_model.identity(folder)
    assert before.startswith("tiny-bert@") and after.startswith("tiny-bert@")
    assert before != after


@pytest.mark.parametrize(("change", "reason"), [
    (lambda f: (f / "tokenizer.json").unlink(), "has no tokenizer.json"),
    (lambda f: (f / "config.json").write_text(
        (f / "config.json").read_text().replace('"bert"', '"gpt2"')),
     "model_type is 'gpt2'; only BERT encoders"),
    (lambda f: (f / "1_Pooling" / "config.json").write_text('{"pooling_mode": "cls"}'),
     "its pooling is ['cls']; only mean pooling"),
    (lambda f: (f / "modules.json").write_text(json.dumps(
        [{"path": "", "type": "sentence_transformers.models.Transformer"},
         {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}])),
     "its module 'sentence_transformers.models.Dense' is not supported"),
    (lambda f: (f / "config.json").write_text("{not json"), "cannot be read as JSON"),
])
def test_a_folder_that_cannot_run_is_refused_with_the_reason(
        tmp_path: Path, change: object, reason: str) -> None:
    folder = tiny_copy(tmp_path)
    change(folder)  # type: ignore[operator]
    with pytest.raises(local_model.ModelFolderError, match=re.escape(reason)):
        local_model.check(folder)


def test_weights_that_do_not_fit_are_refused_when_loaded(tmp_path: Path) -> None:
    folder = tiny_copy(tmp_path)
    weights = load_file(folder / "model.safetensors")
    del weights["encoder.layer.1.output.dense.weight"]
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(local_model.ModelFolderError,
                       match=re.escape("lacks 1 of the encoder's weights, e.g. "
                                                "encoder.layer.1.output")):
        local_model.load(folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(local_model.ModelFolderError, match="cannot be read"):
        local_model.load(folder)


def test_a_local_model_is_checked_at_start(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setenv("EMBEDDING_LOCAL_MODEL", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"EMBEDDING_LOCAL_MODEL: .*nowhere is not a folder"):
        load_settings()
    monkeypatch.setenv("EMBEDDING_LOCAL_MODEL", str(TINY))
    monkeypatch.setenv("EMBEDDING_BASE_URL", "http://localhost:11434/v1")
    monkeypatch.setenv("EMBEDDING_API_KEY", "unused")
    with pytest.raises(ConfigError, match="EMBEDDING_LOCAL_MODEL and EMBEDDING_BASE_URL are "
                                          "both set"):
        load_settings()
    monkeypatch.delenv("EMBEDDING_BASE_URL")
    # A key (for the cards, say) does not take the vectors away from the local model.
    space = space_for(load_settings())
    assert space.name.startswith("local:tiny-bert@")
    assert space.name.endswith(f":32+{vectors.OFFLINE_MODEL}@{vectors.MEANING_SHARE}")
    assert space.dims == 32 + vectors.OFFLINE_DIMS


def test_the_space_is_named_as_a_process_starts_and_a_send_reads_no_model_file(
        tmp_path: Path, settings: Settings) -> None:
    folder = tiny_copy(tmp_path)
    local = settings.model_copy(update={"embedding_local_model": folder})
    named = space_for(local)
    # Once named, the space costs no disk access: not even a stat of the weights.
    moved = folder.rename(tmp_path / "elsewhere")
    assert space_for(local) == named
    moved.rename(folder)

    # A folder that cannot run stops the site as it starts, naming the setting.
    broken = tiny_copy(tmp_path / "broken")
    (broken / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"EMBEDDING_LOCAL_MODEL: .*has no config\.json"):
        create_app(settings.model_copy(update={"embedding_local_model": broken}))


def test_local_vectors_are_the_model_s_beside_the_words() -> None:
    embedder = LocalEmbedder(TINY)
    texts = [EXPECTED["texts"][0], "", "the and of"]
    rows = vectors.stack(embedder.embed(texts).vectors, embedder.space.dims).toarray()
    meaning = local_model.load(TINY).encode(texts)
    words = vectors.offline_vectors(texts).toarray()
    share = vectors.MEANING_SHARE
    # A text with words: the model's part and the words' part, in their shares of the length.
    assert np.abs(rows[0, :32] - np.sqrt(share) * meaning[0]).max() < 1e-3
    assert np.abs(rows[0, 32:] - np.sqrt(1 - share) * words[0]).max() < 1e-3
    # Without words (empty, or stop words only) the model's vector is the whole of it.
    for i in (1, 2):
        assert np.abs(rows[i, :32] - meaning[i]).max() < 1e-3
        assert not rows[i, 32:].any()
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-3)


DAY = "2026-04-27"
DESCRIBE = ("anomaly detection in athletics performance data, and conditional anomaly "
            "detection for clinical alerting")


def cli(database_url: str, *args: str, local: bool = True) -> Result:
    env = {"DATABASE_URL": database_url, "PAPERWIRE_DEV": "1",
           "ARXIV_API_URL": "http://127.0.0.1:9/api/query"}
    if local:
        env["EMBEDDING_LOCAL_MODEL"] = str(TINY)
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_a_reader_learns_in_the_local_space_end_to_end(engine: Engine, settings: Settings,
                                                       database_url: str) -> None:
    ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")))
    summarize_pending(engine, settings)
    assert embed_pending(engine, settings).embedded > 0  # the offline space first

    embedded = cli(database_url, "embed")
    assert embedded.exit_code == 0, embedded.output
    local = space_for(settings.model_copy(update={"embedding_local_model": TINY}))
    with Session(engine) as session:
        stored = session.exec(select(PaperVector)).all()
        papers = session.exec(select(Paper).where(Paper.announced_on == date(2026, 4, 27))
                               ).all()
    # Switching to the local model re-embedded every paper, in its space.
    assert {v.model for v in stored} == {local.name}
    assert f"{len(stored)} papers embedded" in embedded.stdout and local.name in embedded.stdout

    assert cli(database_url, "subscribers", "add", "reader@example.org", "--topics",
               "federated", "--describe", DESCRIBE, "--confirmed").exit_code == 0
    with Session(engine) as session:
        row = session.exec(select(ReaderModelRow)).one()
    assert row.vector_model == local.name
    assert vectors.decode(row.description_vector, local.dims)[:, :32].nnz > 0

    def preview() -> dict[str, dict[str, object]]:
        answer = cli(database_url, "preview", "reader@example.org", "--date", DAY, "--json")
        assert answer.exit_code == 0, answer.output
        return {p["arxiv_id"]: p for p in json.loads(answer.output)}

    by_title = {p.title: p.key for p in papers}
    athletics = next(k for t, k in by_title.items() if t.startswith("Performance Anomaly"))
    clinical = next(k for t, k in by_title.items() if t.startswith("Conditional anomaly"))
    before = preview()
    # No topic names them; the description, through the local space, does.
    assert athletics in before and clinical in before
    rated = cli(database_url, "rate", "reader@example.org", f"{athletics}=down",
                f"{clinical}=up")
    assert rated.exit_code == 0, rated.output
    after = preview()
    assert after.get(athletics, {"score": -1})["score"] < before[athletics]["score"]  # type: ignore[operator]
    assert after[clinical]["score"] >= before[clinical]["score"]  # type: ignore[operator]

    # Back to the offline space: everything is embedded again, and the model follows.
    back = cli(database_url, "embed", local=False)
    assert back.exit_code == 0, back.output
    with Session(engine) as session:
        assert {v.model for v in session.exec(select(PaperVector))} == {vectors.OFFLINE_MODEL}
        assert session.exec(select(ReaderModelRow)).one().vector_model == vectors.OFFLINE_MODEL
