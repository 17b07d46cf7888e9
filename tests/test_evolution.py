"""fooling-evolution: MAP-Elites over direct and CPPN encodings (Nguyen et al. 2015)."""

import math

import pytest
import torch

from robustcnn.checks import AuditData, CheckContext
from robustcnn.checks.fooling_images.fooling_evolution import FoolingEvolutionCheck
from robustcnn.data import Split
from robustcnn.errors import InvalidInputError
from robustcnn.methods.fooling.cppn import N_INPUTS, CPPNEncoding, CPPNRates, Genome
from robustcnn.methods.fooling.direct import DirectEncoding, polynomial_mutation
from robustcnn.methods.fooling.map_elites import map_elites
from robustcnn.models import AuditedModel
from robustcnn.results.schema import tidy


def test_polynomial_mutation_matches_debs_formula_and_mean_step():
    eta = 15.0
    u = torch.tensor([0.25, 0.75, 0.0, 1.0], dtype=torch.float64)
    x = torch.full_like(u, 0.5)
    got = polynomial_mutation(x, u, eta, -10.0, 10.0) - 0.5
    step = (1 - 0.5 ** (1 / 16)) * 20  # delta at u = 0.25 / 0.75, times the range; u = 0 / 1 hit the bounds
    expected = torch.tensor([-step, step, -10.5, 9.5], dtype=torch.float64)
    assert torch.allclose(got, expected)
    # E|delta| = 1 / (eta + 2) for the unclipped operator
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    step = (polynomial_mutation(torch.zeros_like(u), u, eta, -1.0, 1.0) / 2).abs().mean()
    assert abs(float(step) - 1 / 17) < 2e-3
    assert polynomial_mutation(torch.tensor([0.99]), torch.tensor([1.0]), eta, 0.0, 1.0).item() == 1.0


def test_direct_mutation_rate_and_halving_schedule():
    enc = DirectEncoding((1, 28, 28), 0.1, 10, 15.0, torch.Generator().manual_seed(0))
    assert enc.rate_at(0) == enc.rate_at(9) == 0.1 and enc.rate_at(10) == 0.05 and enc.rate_at(25) == 0.025
    parents = enc.random(200)
    assert parents.min() >= 0 and parents.max() <= 1 and abs(parents.mean().item() - 0.5) < 0.01
    for generation, rate in ((0, 0.1), (10, 0.05)):
        changed = (enc.mutate(parents, generation) != parents).float().mean().item()
        assert abs(changed - rate) < 0.1 * rate


def _toy_scores(weights: torch.Tensor, seen: list):
    def scores(images: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(images.flatten(1).double() @ weights, dim=1)
        seen.append(logp)
        return logp

    return scores


def test_map_elites_keeps_the_best_ever_image_of_every_class():
    weights = torch.randn(16, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    seen: list = []
    gen = torch.Generator().manual_seed(0)
    enc = DirectEncoding((1, 4, 4), 0.2, 100, 15.0, gen)
    trace, generations, evals = map_elites(
        enc, _toy_scores(weights, seen), [0, 2, 3], (1, 4, 4), 30, 12, [0.5, 0.9], 1.0, gen
    )
    assert generations == 12 and evals == 30 * 13 and len(seen) == 13
    every = torch.cat(seen)[:, [0, 2, 3]].exp()
    assert torch.allclose(trace.best, every.max(dim=0).values)
    champion_scores = _toy_scores(weights, [])(trace.images)[:, [0, 2, 3]].exp().diagonal()
    assert torch.allclose(champion_scores, trace.best.double())
    for j, thr in enumerate([0.5, 0.9]):  # first generation whose running best passes the threshold
        running = torch.stack([s[:, [0, 2, 3]].exp().max(0).values for s in seen]).cummax(0).values
        first = [(running[:, i] >= thr).nonzero()[0].item() if (running[:, i] >= thr).any() else -1 for i in range(3)]
        assert trace.step_at[:, j].tolist() == first
        assert trace.evals_at[:, j].tolist() == [30 * (g + 1) if g >= 0 else -1 for g in first]


def _positions(g: Genome, channels: int) -> dict:
    pos = {i: i for i in range(N_INPUTS)} | {n: N_INPUTS + j for j, (n, _) in enumerate(g.hidden)}
    return pos | {N_INPUTS + c: 10_000 + c for c in range(channels)}


def test_cppn_mutations_keep_a_feedforward_graph_and_batched_render_matches_single():
    enc = CPPNEncoding((3, 17, 23), 15.0, torch.Generator().manual_seed(0), rates=CPPNRates(max_hidden=6))
    pop = enc.random(8)
    assert all(not g.hidden and len(g.conns) == N_INPUTS * 3 for g in pop)
    for generation in range(1, 40):
        pop = enc.mutate(pop, generation)
    assert any(g.hidden for g in pop) and all(len(g.hidden) <= 6 for g in pop)
    for g in pop:
        pos = _positions(g, 3)
        assert all(pos[s] < pos[d] and d >= N_INPUTS for s, d in g.conns)
        assert all(abs(w) <= 10.0 for w in g.conns.values())
    images = enc.render(pop)
    assert images.shape == (8, 3, 17, 23) and images.min() >= 0 and images.max() <= 1
    for i in (0, 5):
        assert torch.allclose(enc.render([pop[i]])[0], images[i], atol=1e-6)


def test_cppn_render_matches_a_hand_computed_network():
    enc = CPPNEncoding((1, 5, 7), 15.0, torch.Generator().manual_seed(0))
    # hidden sine node 5 fed by x (weight 2) and bias (0.5); output 4 = sigmoid(1.5 * h - d)
    g = Genome([(5, 0)], {(0, 5): 2.0, (3, 5): 0.5, (5, 4): 1.5, (2, 4): -1.0}, 6)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 7), indexing="ij")
    expected = torch.sigmoid(1.5 * torch.sin(2 * xs + 0.5) - (xs**2 + ys**2).sqrt())
    assert torch.allclose(enc.render([g])[0, 0], expected, atol=1e-6)


@pytest.fixture(scope="module")
def small_run(demo_model, mnist_audit):
    opts = {"classes": [0, "1", 8], "population": 40, "generations": 6}
    before = demo_model.counter.snapshot()
    out = FoolingEvolutionCheck.from_options(opts).run(demo_model, mnist_audit, CheckContext(seed=3))
    after = demo_model.counter.snapshot()
    return out, tidy(out.rows, "demo", "fooling-evolution"), (after[0] - before[0], after[1] - before[1])


def test_check_is_black_box_batched_and_reports_its_cost(small_run, demo_model):
    out, table, (forward, backward) = small_run
    assert backward == 0
    spent = table[table.metric == "model_evaluations"]["value"].sum()
    assert forward == spent
    gens = table[table.metric == "generations_run"].set_index("encoding")["value"]
    evals = table[table.metric == "model_evaluations"].set_index("encoding")["value"]
    assert ((gens + 1) * 40 == evals).all()
    images = out.artifacts["fooling-evolution/images"]
    assert images.shape == (6, 1, 28, 28) and out.info["artifact_order"][:3] == ["direct:0", "direct:1", "direct:8"]
    best = table[table.metric == "best_confidence"]
    for i, (enc, cls) in enumerate(x.split(":") for x in out.info["artifact_order"]):
        reported = best[(best.encoding == enc) & (best["class"] == cls)]["value"].item()
        got = demo_model.logits(images[i : i + 1]).double().softmax(1)[0, int(cls)].item()
        assert got == pytest.approx(reported, rel=1e-5, abs=1e-9)
    assert set(out.figures) == {"fooling-evolution-direct", "fooling-evolution-cppn"} and out.info["seed"] == 3


def test_unreached_marked_and_cppn_finds_confident_patterns(small_run):
    _, table, _ = small_run
    rows = table[table.metric == "generations_to_confidence"]
    assert set(rows.status) <= {"reached", "unreached"}
    assert rows[rows.status == "unreached"]["value"].isna().all()
    assert (rows[rows.status == "reached"]["value"] <= 6).all()
    cppn = table[(table.metric == "best_confidence") & (table.encoding == "cppn")].set_index("class")["value"]
    assert (
        cppn["0"] > 0.99 and cppn["1"] > 0.99
    )  # the demo CNN takes simple patterns for digits within a few generations


def test_headline_row_takes_per_class_the_cheaper_encoding(small_run):
    _, table, _ = small_run
    steps = table[(table.metric == "generations_to_confidence") & (table.threshold == 0.99)]
    fewest = steps.pivot(index="class", columns="encoding", values="value").fillna(math.inf).min(axis=1)
    combined = table[(table.metric == "median_generations_to_confidence") & table.encoding.isna()]
    assert sorted(combined.threshold) == [0.99, 0.999, 0.9999]
    row = combined[combined.threshold == 0.99].iloc[0]
    assert row["value"] == sorted(fewest)[1] and row["n"] == 3
    assert row["status"] == ("censored" if math.isinf(row["value"]) else "reached")
    head = FoolingEvolutionCheck().headline(table)
    top = combined[combined.threshold == 0.9999].iloc[0]
    assert head.value == top["value"]
    assert head.where == {"metric": "median_generations_to_confidence", "threshold": 0.9999}
    assert head.better == "higher" and "99.99%" in head.label


def test_a_gate_on_the_headline_metric_bounds_the_row_without_encoding(small_run):
    from robustcnn.reports.gates import parse_gates, select_rows

    _, table, _ = small_run
    raw = {"check": "fooling-evolution", "metric": "median_generations_to_confidence", "threshold": 0.9999, "min": 50}
    rows = select_rows(table, parse_gates([raw], "test")[0])
    assert len(rows) == 1 and rows["encoding"].isna().all()


def test_headline_ranks_the_demo_cnn_below_an_adversarially_trained_model(demo_model, mnist_audit, mnist):
    """Within 40 generations CPPN fools most demo-CNN classes at 99.99% and no class of the adversarially
    trained model, whose champions stay far below it: the cost to fool separates them."""
    from reference_models import three_models

    models = three_models(mnist, demo_model, mnist_audit.eval.x[:2])
    heads, best = {}, {}
    for name in ("demo", "adversarial"):
        check = FoolingEvolutionCheck.from_options({"encodings": ["cppn"], "population": 50, "generations": 40})
        table = tidy(check.run(models[name], mnist_audit, CheckContext(seed=0)).rows, name, check.name)
        heads[name] = check.headline(table)
        best[name] = table[table.metric == "best_confidence"]["value"].median()
    demo, adversarial = heads["demo"], heads["adversarial"]
    assert math.isfinite(demo.value) and demo.value < adversarial.ci_low and "censored" in adversarial.label
    assert best["adversarial"] < 0.99 < best["demo"]


def test_same_seed_same_champions(demo_model, mnist_audit):
    opts = {"classes": [5], "population": 10, "generations": 3, "encodings": ["cppn"]}
    runs = [
        FoolingEvolutionCheck.from_options(opts).run(demo_model, mnist_audit, CheckContext(seed=s)) for s in (4, 4, 5)
    ]
    imgs = [r.artifacts["fooling-evolution/images"] for r in runs]
    assert torch.equal(imgs[0], imgs[1]) and not torch.equal(imgs[0], imgs[2])


def test_cppn_renders_at_any_size_and_channels():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 5)
    )
    torch.manual_seed(0)
    model = AuditedModel(net, 5, 3, (21, 33))
    x = torch.rand(4, 3, 21, 33)
    data = AuditData("toy", list("abcde"), Split(x, torch.arange(4), [str(i) for i in range(4)]))
    out = FoolingEvolutionCheck.from_options({"encodings": ["cppn"], "population": 8, "generations": 2}).run(
        model, data, CheckContext()
    )
    assert out.artifacts["fooling-evolution/images"].shape == (5, 3, 21, 33)


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"population": 0}, "option 'population' must be an integer >= 1"),
        ({"generations": 0}, "option 'generations' must be an integer >= 1"),
        ({"classes": [10]}, "out of range"),
        ({"encodings": ["genetic"]}, "option 'encodings' must be a non-empty list of names from"),
        ({"mutation_rate": 0}, r"option 'mutation_rate' must be a number in \(0, 1\]"),
    ],
)
def test_bad_input_raises_one_clear_line(options, fragment, demo_model, mnist_audit):
    with pytest.raises(InvalidInputError, match=fragment) as err:
        FoolingEvolutionCheck.from_options(options).run(demo_model, mnist_audit, CheckContext())
    assert "\n" not in str(err.value)


def test_direct_encoding_reproduces_the_papers_mnist_figure_on_lenet():
    """Nguyen et al. 2015: on Caffe's LeNet, direct-encoding MAP-Elites fools all ten digits at
    >= 99.99% in fewer than 50 generations (here with population 200, seed 0)."""
    from robustcnn.methods.fooling.gradient import log_probabilities
    from robustcnn.models import ModelRef

    model = ModelRef("demo:mnist-lenet").load(10, 1, (28, 28))
    gen = torch.Generator().manual_seed(0)
    enc = DirectEncoding((1, 28, 28), 0.1, 1000, 15.0, gen)

    def scores(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return log_probabilities(model(x), False)

    trace, _, _ = map_elites(enc, scores, list(range(10)), (1, 28, 28), 200, 49, [0.9999], 0.99999, gen)
    assert (trace.best >= 0.9999).all(), trace.best
    assert int(trace.step_at[:, 0].max()) < 50
