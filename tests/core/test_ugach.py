"""UGACH, mechanism by mechanism: the correlation graph, the generator's sampling, the
discriminator's triplet loss, REINFORCE, a text query on a synthetic two-modality set, and
save/reload giving identical codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imagehash_app.core.codes import hamming_topk
from imagehash_app.core.hashing.ugach import (
    UGACH,
    UGACHParams,
    correlation_graph,
    discriminator_loss,
    generator_loss,
    generator_probabilities,
    knn,
    sample_generated,
    triplet_relevance,
)
from imagehash_app.core.words.bags import Vocabulary

WORDS = ["sea", "forest", "city"]


def synthetic(seed: int = 0, n: int = 240, dim: int = 32, tagged_share: float = 0.15):
    """Three clusters of photo features; a share of photos carry their cluster's word (and a
    shared noise word), the rest none."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 3
    labels = np.arange(n) % 3
    X = (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32)
    tagged = np.flatnonzero(rng.random(n) < tagged_share)
    bags = [[WORDS[labels[i]], "holiday"] for i in tagged]
    return X, labels, tagged, bags


def test_knn_graph_finds_the_nearest_others() -> None:
    X = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    nn = knn(X, 1)
    assert nn[:, 0].tolist() == [1, 0, 3, 2]


def test_correlation_graph_links_pairs_neighbours_and_neighbours_pairs() -> None:
    images = np.array([[1, 0], [0.95, 0.05], [0, 1], [0.05, 0.95]], dtype=np.float32)
    texts = np.array([[1, 0], [0, 1]], dtype=np.float32)  # bag 0 on photo 0, bag 1 on photo 2
    g = correlation_graph(images, texts, np.array([0, 2]), k=1)
    assert g.text_to_image[0].tolist() == [0, 1, 2]  # its photo, that photo's neighbour, bag 1's photo
    assert 0 in g.image_to_text[1].tolist()  # photo 1 (no words) is near photo 0's bag
    assert g.image_to_text[3].tolist() == [1]


def test_generator_samples_by_relevance() -> None:
    h_q = torch.tensor([[0.0, 0.0]])
    pool = torch.tensor([[0.0, 0.0], [3.0, 3.0]])
    probs = generator_probabilities(h_q, pool)
    assert probs[0, 0] > 0.99 and torch.isclose(probs.sum(), torch.tensor(1.0))
    picks = sample_generated(probs, 200, torch.Generator().manual_seed(0))
    assert (picks == 0).float().mean() > 0.95


def test_discriminator_loss_is_zero_once_true_pairs_win_by_the_margin() -> None:
    q = torch.zeros(1, 1, 4)
    near, far = torch.zeros(1, 1, 4), torch.ones(1, 1, 4)
    assert float(discriminator_loss(q, near, far, margin=1.0)) == 0.0  # 0 + 1 - 4 < 0
    assert float(discriminator_loss(q, far, near, margin=1.0)) == pytest.approx(5.0)
    assert float(triplet_relevance(q, far, near, 1.0)) == pytest.approx(5.0)


def test_reinforce_raises_the_probability_of_rewarded_picks() -> None:
    logits = torch.zeros(1, 3, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=1.0)
    for _ in range(20):
        probs = torch.softmax(logits, 1)
        picked = torch.tensor([[2]])
        loss = generator_loss(torch.log(torch.gather(probs, 1, picked)), torch.tensor([[1.0]]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.softmax(logits, 1)[0, 2] > 0.9


@pytest.fixture(scope="module")
def trained() -> tuple:
    X, labels, tagged, bags = synthetic()
    vocab = Vocabulary.fit(bags)
    T = vocab.transform(bags)
    params = UGACHParams(bits=16, hidden=64, k=5, pretrain_epochs=4, epochs=4, candidates=64,
                         batch=32, seed=0)
    model = UGACH(X.shape[1], len(vocab), params).fit(X, T, tagged)
    return model, vocab, X, labels, tagged


def test_a_text_query_finds_its_cluster_among_untagged_photos(trained) -> None:
    model, vocab, X, labels, tagged = trained
    untagged = np.setdiff1d(np.arange(len(X)), tagged)
    codes = model.encode_images(X[untagged])
    for target, word in enumerate(WORDS):
        idx, _ = hamming_topk(model.encode_texts(vocab.transform([[word]])), codes, 20)
        precision = float((labels[untagged[idx[0]]] == target).mean())
        assert precision >= 0.8, (word, precision)
    assert model.history[-1]["g_loss"] != 0.0  # the generator was trained adversarially


def test_ablation_trains_no_generator() -> None:
    X, _, tagged, bags = synthetic(seed=1, n=90)
    vocab = Vocabulary.fit(bags)
    params = UGACHParams(bits=16, hidden=32, k=3, pretrain_epochs=1, epochs=2, candidates=32,
                         adversarial=False)
    model = UGACH(X.shape[1], len(vocab), params).fit(X, vocab.transform(bags), tagged)
    assert all(h["g_loss"] == 0.0 for h in model.history)


def test_save_and_reload_give_identical_codes(trained, tmp_path: Path) -> None:
    model, vocab, X, _, _ = trained
    model.save(tmp_path / "m", {"vocabulary": vocab.words})
    again, doc = UGACH.load(tmp_path / "m")
    assert doc["vocabulary"] == vocab.words
    assert np.array_equal(again.encode_images(X), model.encode_images(X))
    T = vocab.transform([[w] for w in WORDS])
    assert np.array_equal(again.encode_texts(T), model.encode_texts(T))
