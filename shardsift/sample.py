"""A deterministic generated sample corpus, so `make select` runs with no download.

The pool mixes topical documents (each topic has its own vocabulary), low-quality junk (too short,
symbol soup, repeated boilerplate), exact duplicates and near-duplicates spread across shards, and a
few documents in other languages (sentences of each language's common words, domain ``german``,
``french``, ...) for the ``language`` filter, and topical web pages that trip the quality rules
(repeated lines, bullet lists, "read more..." lines, menus without punctuation, lorem ipsum, a
JavaScript notice, a cookie-policy notice, code in curly braces). The target is a separate set of documents of one topic (``astronomy``). The ``domain`` column is the
ground truth for evaluation; no selector reads it.
"""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TOPICS = {
    "astronomy": "star planet orbit galaxy telescope comet nebula gravity moon solar eclipse astronomer "
                 "asteroid cosmic light years spectrum supernova crater observatory celestial universe "
                 "meteor jupiter saturn mars venus rotation axis dwarf cluster quasar pulsar radiation",
    "cooking": "recipe oven flour butter sugar salt pepper garlic onion simmer boil bake roast sauce "
               "dough knead whisk spoon pan skillet tomato basil olive oil broth stew flavor taste "
               "kitchen chef dinner lunch season grill slice chop",
    "law": "court judge contract plaintiff defendant statute clause agreement liability attorney "
           "appeal verdict jury evidence witness testimony lawsuit damages breach party tenant "
           "landlord license property deed settlement ruling precedent jurisdiction counsel",
    "sports": "team player coach match goal score season league ball stadium referee tournament "
              "championship victory defeat pitch field training sprint marathon fans penalty "
              "striker keeper inning basket racket medal athlete record",
    "computing": "software compiler memory processor kernel thread function variable database "
                 "server network protocol packet algorithm binary cache disk file system program "
                 "debug code module library interface query index array pointer",
    "medicine": "patient doctor nurse hospital clinic symptom diagnosis treatment therapy dose "
                "vaccine infection virus bacteria fever blood pressure heart lung surgery recovery "
                "medicine prescription chronic acute immune cell tissue",
    "finance": "market stock bond investor interest rate inflation bank loan credit debt equity "
               "dividend portfolio fund asset price trade currency profit revenue budget tax "
               "capital risk yield broker",
}
FUNCTION = ["the", "a", "of", "and", "to", "in", "is", "was", "for", "on", "with", "as", "by", "at", "from", "that", "this", "it", "are", "be", "which", "their", "its", "an", "or", "not", "but", "have", "has", "had", "were", "they", "he", "she", "we"]
# Common words of a few other languages (function words, frequent nouns and verbs): sentences drawn from
# them are unmistakably in that language for a language identifier, though they mean nothing.
OTHER_LANGUAGES = {
    "german": "der die das und ist nicht ein eine zu mit auf für von den dem sich auch es wir sie "
              "haben wird werden aber oder wenn noch nach bei über unter heute jahr zeit stadt haus "
              "kinder arbeit menschen leben immer schon sehr gut",
    "french": "le la les et est une des du pour dans que qui sur avec par pas plus nous vous ils "
              "elle sont être avoir fait mais aussi comme tout très bien temps jour ville maison "
              "enfants travail gens vie toujours déjà cette leurs",
    "spanish": "el la los las y es una del para con que por como pero más muy este esta son ser "
               "tiene hace también todo cuando donde siempre ahora año tiempo ciudad casa niños "
               "trabajo gente vida nosotros ellos usted",
    "italian": "il lo la gli le e è una del della per con che non sono come più anche molto questo "
               "questa essere hanno fatto quando dove sempre oggi anno tempo città casa bambini "
               "lavoro persone vita noi loro",
    "dutch": "de het een en is van dat niet op te met voor zijn er maar ook als bij naar wordt "
             "worden hebben deze door nog over onder vandaag jaar tijd stad huis kinderen werk "
             "mensen leven altijd zeer goed",
}
BOILER = ("click here to subscribe", "all rights reserved", "cookie policy accept",
          "share on social media", "buy now limited offer", "sign up for our newsletter")


def _sentence(rng, vocab, n_words):
    topic_share = 0.45
    words = np.where(rng.random(n_words) < topic_share,
                     rng.choice(vocab, n_words), rng.choice(FUNCTION, n_words))
    s = " ".join(words)
    return s[:1].upper() + s[1:] + "."


def _document(rng, vocab, n_sent):
    sents = [_sentence(rng, vocab, int(rng.integers(8, 20))) for _ in range(n_sent)]
    paras, k = [], 0
    while k < len(sents):
        step = int(rng.integers(2, 6))
        paras.append(" ".join(sents[k:k + step]))
        k += step
    return "\n\n".join(paras)


def _other_language(rng, words, n_sent):
    """A document in another language: sentences of its common words."""
    sents = []
    for _ in range(n_sent):
        s = " ".join(rng.choice(words, int(rng.integers(8, 20))))
        sents.append(s[:1].upper() + s[1:] + ".")
    return " ".join(sents)


def _junk(rng):
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return " ".join(rng.choice(FUNCTION, int(rng.integers(1, 6))))  # too short
    if kind == 1:
        return "".join(rng.choice(list("#$%&*@!~^=+|<>"), int(rng.integers(30, 200))))  # symbol soup
    if kind == 2:
        return " ".join([str(rng.choice(BOILER))] * int(rng.integers(3, 15)))  # boilerplate
    return "x" * int(rng.integers(20, 400))


# the parts of a crawled page that the web quality rules look for (written for this sample)
MENU = ("Home", "About us", "Products", "Contact", "Blog", "Careers", "Login", "Cart", "Help", "Search")


def _web_page(rng, vocab):
    """A page whose topical sentences come with one kind of web junk, one kind per page, so that
    each quality rule has documents of its own to drop."""
    lines = [_sentence(rng, vocab, int(rng.integers(9, 16))) for _ in range(int(rng.integers(3, 7)))]
    kind = int(rng.integers(0, 8))
    if kind == 0:    # one line repeated (gopher_repetition: duplicate lines)
        lines += ["Subscribe to our newsletter for weekly updates."] * int(rng.integers(6, 12))
    elif kind == 1:  # a bullet list of short items (gopher_quality: bullet lines)
        lines += [f"\u2022 {w}" for w in rng.choice(vocab, int(rng.integers(12, 24)))]
    elif kind == 2:  # teaser lines (gopher_quality: lines ending with an ellipsis)
        lines += [_sentence(rng, vocab, 6)[:-1] + "..." for _ in range(int(rng.integers(8, 14)))]
    elif kind == 3:  # a navigation menu, one word per line (fineweb_quality: short lines, no punctuation)
        lines = [str(m) for m in rng.choice(MENU, int(rng.integers(14, 24)))] + lines[:2]
    elif kind == 4:  # placeholder text (c4_quality: lorem ipsum)
        lines.insert(1, "Lorem ipsum dolor sit amet, consectetur adipiscing elit.")
    elif kind == 5:  # a script notice (c4_quality: javascript)
        lines.append("Please enable JavaScript in your browser to see this page.")
    elif kind == 6:  # a policy notice (c4_quality: policy lines)
        lines.append("This site uses cookies; by continuing you agree to our privacy policy and terms of use.")
    else:            # code on the page (c4_quality: curly braces)
        lines.append("function show() { return document.getElementById('menu'); }")
    return "\n".join(lines)


def _edit(rng, text, rate):
    words = text.split(" ")
    n = len(words)
    k = max(1, int(round(rate * n)))
    idx = rng.choice(n, size=min(k, n), replace=False)
    for i in idx:
        words[i] = str(rng.choice(FUNCTION))
    return " ".join(words)


def generate(n_docs: int = 4000, seed: int = 0):
    """Returns (pool rows, target rows) as dicts of lists."""
    rng = np.random.default_rng(seed)
    vocabs = {k: np.array(v.split()) for k, v in TOPICS.items()}
    names = list(TOPICS)
    n_junk = int(0.10 * n_docs)
    n_dup = int(0.08 * n_docs)
    n_other = int(0.05 * n_docs)
    n_web = int(0.04 * n_docs)
    n_topic = n_docs - n_junk - n_dup - n_other - n_web
    texts, domains = [], []
    weights = np.array([0.08, 0.2, 0.14, 0.18, 0.16, 0.12, 0.12])  # astronomy is rare in the pool
    topic_of = rng.choice(len(names), size=n_topic, p=weights / weights.sum())
    for t in topic_of:
        texts.append(_document(rng, vocabs[names[t]], int(rng.integers(3, 30))))
        domains.append(names[t])
    for _ in range(n_junk):
        texts.append(_junk(rng))
        domains.append("junk")
    other = list(OTHER_LANGUAGES)
    for k in rng.choice(len(other), size=n_other):
        texts.append(_other_language(rng, np.array(OTHER_LANGUAGES[other[k]].split()), int(rng.integers(3, 15))))
        domains.append(other[k])
    wrng = np.random.default_rng(seed + 2)  # its own stream: the other documents stay as they were drawn
    for t in wrng.choice(len(names), size=n_web, p=weights / weights.sum()):
        texts.append(_web_page(wrng, vocabs[names[t]]))
        domains.append(names[t])  # a topical page with its junk: the topic is its domain
    sources = rng.choice(n_topic, size=n_dup, replace=False)
    for j, s in enumerate(sources):
        if j % 4 == 0:
            texts.append(texts[s])  # exact duplicate
        else:
            texts.append(_edit(rng, texts[s], rate=float(rng.choice([0.01, 0.02, 0.03]))))
        domains.append(domains[s])
    order = rng.permutation(len(texts))
    pool = {"id": [f"doc-{i:06d}" for i in range(len(texts))],
            "text": [texts[i] for i in order], "domain": [domains[i] for i in order]}
    trng = np.random.default_rng(seed + 1)
    n_target = max(50, n_docs // 12)
    target = {"id": [f"target-{i:05d}" for i in range(n_target)],
              "text": [_document(trng, vocabs["astronomy"], int(trng.integers(3, 30))) for _ in range(n_target)],
              "domain": ["astronomy"] * n_target}
    return pool, target


SAMPLE_VERSION = "5"  # bump when the generator or the example inputs change: `make select` regenerates


def is_current(out: str, n_docs: int = 4000, n_shards: int = 4, seed: int = 0) -> bool:
    stamp = os.path.join(out, ".complete")
    try:
        with open(stamp, encoding="utf-8") as fh:
            return fh.read().strip() == f"{SAMPLE_VERSION} {n_docs} {n_shards} {seed}"
    except OSError:
        return False


def write_sample(out: str, n_docs: int = 4000, n_shards: int = 4, seed: int = 0) -> dict:
    """Write OUT/pool/part-0000k.parquet, OUT/target/target.parquet and example inputs.

    ``OUT/.complete`` is written last and records the generator version, so a sample from an older
    shardsift (or a half-written one) is regenerated rather than used.
    """
    pool, target = generate(n_docs, seed)
    os.makedirs(os.path.join(out, "pool"), exist_ok=True)
    os.makedirs(os.path.join(out, "target"), exist_ok=True)
    tbl = pa.table(pool)
    bounds = np.linspace(0, tbl.num_rows, n_shards + 1).astype(int)
    for k in range(n_shards):
        pq.write_table(tbl.slice(bounds[k], bounds[k + 1] - bounds[k]),
                       os.path.join(out, "pool", f"part-{k:05d}.parquet"), compression="zstd")
    pq.write_table(pa.table(target), os.path.join(out, "target", "target.parquet"), compression="zstd")
    from .selectors.perplexity import write_example_inputs

    # a generated loss matrix + benchmark errors per domain, for configs/perplexity.yaml
    write_example_inputs(os.path.join(out, "perplexity"), tbl, seed=seed)
    with open(os.path.join(out, ".complete"), "w", encoding="utf-8") as fh:
        fh.write(f"{SAMPLE_VERSION} {n_docs} {n_shards} {seed}\n")
    return {"docs": tbl.num_rows, "shards": n_shards, "target_docs": len(target["id"])}
