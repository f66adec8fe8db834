"""The topic taxonomy: what a card's `topics` may contain and what subscribers pick from.

Slugs are stable (subscriber preferences store them); names and descriptions may be
reworded. The descriptions go into the LLM prompt, so they say where the border between
neighbouring topics lies. The category and keyword tables serve the offline writer.

Names and descriptions are written in English, and English is what the prompt gets; a
reader sees them in their language (`topic_name`, `Topic.shown_name`, `.shown_description`:
the `site` catalog, newsletter/i18n.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from newsletter import i18n


def N_(message: str) -> str:
    """Marks a message for extraction (`make messages`); translated where it is shown."""
    return message


@dataclass(frozen=True)
class Topic:
    slug: str
    name: str  # English, as the LLM prompt has it
    description: str

    @property
    def shown_name(self) -> str:
        """The name in the reader's language."""
        return i18n.gettext(self.name)

    @property
    def shown_description(self) -> str:
        return i18n.gettext(self.description)


TOPICS: tuple[Topic, ...] = (
    Topic("optimization", N_("Optimization"),
          N_("Training algorithms and optimizers, convergence, learning-rate schedules, "
             "loss landscapes, hyperparameter search, and mathematical optimization.")),
    Topic("theory", N_("Theory"),
          N_("Learning theory and statistics: generalization and sample-complexity bounds, "
             "proofs, regret analysis, approximation and statistical guarantees.")),
    Topic("llm", N_("Large Language Models"),
          N_("Training, prompting, reasoning, alignment, evaluation and agents built on "
             "large language models.")),
    Topic("efficient-ml", N_("Efficient ML"),
          N_("Making models cheaper or faster: quantization, pruning, distillation, sparsity, "
             "KV-cache and memory savings, efficient kernels and hardware-aware methods.")),
    Topic("nlp", N_("NLP"),
          N_("Natural language processing beyond LLM internals: text classification, "
             "translation, summarization, question answering, speech and linguistics.")),
    Topic("rl", N_("Reinforcement Learning"),
          N_("Agents learning from reward: policies, value functions, bandits, offline RL, "
             "RL from human feedback, planning and control.")),
    Topic("interpretability", N_("Interpretability"),
          N_("Explaining models: attribution, probing, mechanistic analysis, feature "
             "visualization, and understanding what networks represent.")),
    Topic("graphs", N_("Graph Learning"),
          N_("Graph neural networks, message passing, node and link prediction, knowledge "
             "graphs and learning on molecules or networks.")),
    Topic("robotics", N_("Robotics"),
          N_("Robot learning, manipulation, locomotion, navigation, autonomous driving and "
             "embodied agents.")),
    Topic("generative", N_("Generative Models"),
          N_("Diffusion, flow matching, GANs, VAEs, autoregressive and score-based models "
             "that generate images, audio, video, molecules or other data.")),
    Topic("time-series", N_("Time Series"),
          N_("Forecasting, temporal and spatio-temporal modelling, sequential sensor data and "
             "anomaly detection over time.")),
    Topic("federated", N_("Federated Learning"),
          N_("Training across clients or devices without pooling data: federated and "
             "decentralized learning, communication efficiency, privacy.")),
    Topic("vision", N_("Computer Vision"),
          N_("Images and video: recognition, detection, segmentation, 3D vision, "
             "visual representation learning.")),
    Topic("multimodal", N_("Multimodal"),
          N_("Models that combine modalities: vision-language models, text-to-image, "
             "audio-visual and cross-modal retrieval.")),
)

BY_SLUG: dict[str, Topic] = {t.slug: t for t in TOPICS}
SLUGS: tuple[str, ...] = tuple(t.slug for t in TOPICS)
MAX_TOPICS = 3


def topic_name(slug: str) -> str:
    """The topic's name in the language in force (a slug we do not know, as it is)."""
    return BY_SLUG[slug].shown_name if slug in BY_SLUG else slug


def known_topics(slugs: Iterable[str]) -> list[str]:
    """The slugs that are in the taxonomy, normalized, first occurrence kept, in order."""
    seen: list[str] = []
    for raw in slugs:
        slug = str(raw).strip().lower().replace("_", "-").replace(" ", "-")
        if slug in BY_SLUG and slug not in seen:
            seen.append(slug)
    return seen


# An arXiv category is strong evidence for a topic; the generic ones (cs.LG, cs.AI,
# stat.ML) say nothing about which, so they are absent on purpose.
CATEGORY_TOPICS: dict[str, tuple[str, ...]] = {
    "cs.CL": ("nlp",),
    "cs.CV": ("vision",),
    "eess.IV": ("vision",),
    "cs.RO": ("robotics",),
    "math.OC": ("optimization",),
    "stat.TH": ("theory",),
    "math.ST": ("theory",),
    "cs.GT": ("theory",),
    "cs.SI": ("graphs",),
    "cs.MM": ("multimodal",),
    "eess.AS": ("nlp",),
    "cs.SD": ("multimodal",),
    "cs.AR": ("efficient-ml",),
    "cs.PF": ("efficient-ml",),
    "cs.MA": ("rl",),
    "eess.SY": ("rl",),
    "q-bio.BM": ("graphs",),
}

# Word stems per topic; matched at a word start, case-insensitively.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "optimization": ("optimiz", "optimis", "gradient descent", "convergence", "convex",
                     "stochastic gradient", "sgd", "adam", "learning rate", "loss landscape",
                     "hyperparameter", "minimax", "second-order"),
    "theory": ("theorem", "provabl", "regret bound", "sample complexity",
               "generalization bound", "pac-bayes", "theoretical", "we prove", "asymptotic",
               "upper bound", "lower bound", "minimax rate"),
    "llm": ("large language model", "llm", "language model", "gpt", "chatgpt",
            "instruction tun", "in-context", "prompt", "chain-of-thought", "rlhf",
            "reasoning model", "agentic", "llm agent", "jailbreak", "hallucinat"),
    "efficient-ml": ("quantiz", "pruning", "prune", "distillation", "sparsit",
                     "efficien", "latency", "memory footprint", "compression", "low-rank",
                     "lora", "kv cache", "kv-cache", "speedup", "throughput", "accelerat",
                     "inference cost", "hardware"),
    "nlp": ("natural language", "text classification", "machine translation", "translation",
            "sentiment", "question answering", "tokeniz", "corpus", "corpora",
            "linguistic", "dialogue", "summarization", "named entity", "speech",
            "multilingual", "low-resource language"),
    "rl": ("reinforcement learning", "policy", "policies", "reward", "markov decision",
           "q-learning", "bandit", "actor-critic", "offline rl", "exploration",
           "value function"),
    "interpretability": ("interpretab", "explainab", "explanation", "attribution",
                         "saliency", "shapley", "mechanistic", "probing", "circuit",
                         "sparse autoencoder", "feature visualization", "transparen"),
    "graphs": ("graph neural", "gnn", "graph", "message passing", "node classification",
               "link prediction", "knowledge graph", "molecul"),
    "robotics": ("robot", "manipulation", "locomotion", "embodied", "grasp",
                 "autonomous driving", "navigation", "sim-to-real", "teleoperation"),
    "generative": ("diffusion", "generative", "gan", "variational autoencoder", "vae",
                   "flow matching", "normalizing flow", "score-based", "image generation",
                   "text-to-image", "denoising"),
    "time-series": ("time series", "time-series", "forecast", "temporal", "spatiotemporal",
                    "spatio-temporal", "anomaly detection", "sensor"),
    "federated": ("federated", "clients", "decentralized", "privacy-preserving",
                  "differential privacy", "on-device", "communication-efficient"),
    "vision": ("image", "vision", "visual", "video", "segmentation", "object detection",
               "pixel", "convolutional", "camera", "point cloud", "3d", "vit"),
    "multimodal": ("multimodal", "multi-modal", "vision-language", "vlm",
                   "image-text", "audio-visual", "cross-modal", "text-to-image", "clip"),
}



def _keyword_pattern(word: str) -> re.Pattern[str]:
    # Long entries are stems ("quantiz" finds quantization); short ones are acronyms that
    # must end where the word ends ("gan" is not "gang"), plural allowed.
    tail = r"s?(?![a-z0-9])" if len(word) <= 4 else ""
    return re.compile(r"(?<![a-z0-9])" + re.escape(word) + tail, re.IGNORECASE)


_KEYWORD_PATTERNS: dict[str, tuple[re.Pattern[str], ...]] = {
    slug: tuple(_keyword_pattern(word) for word in words) for slug, words in KEYWORDS.items()
}

_CATEGORY_WEIGHT = 3
_TITLE_WEIGHT = 2
_ABSTRACT_WEIGHT = 1
_MIN_SCORE = 2


def topic_scores(title: str, abstract: str, categories: Sequence[str]) -> dict[str, int]:
    """Evidence for each topic: categories weigh most, then title words, then abstract words."""
    scores = dict.fromkeys(SLUGS, 0)
    for category in categories:
        for slug in CATEGORY_TOPICS.get(category, ()):
            scores[slug] += _CATEGORY_WEIGHT
    for slug, patterns in _KEYWORD_PATTERNS.items():
        for pattern in patterns:
            if pattern.search(title):
                scores[slug] += _TITLE_WEIGHT
            if pattern.search(abstract):
                scores[slug] += _ABSTRACT_WEIGHT
    return scores


def guess_topics(title: str, abstract: str, categories: Sequence[str]) -> list[str]:
    """1 to 3 topics from categories and keywords, strongest first, ties in taxonomy order.

    A topic needs at least a title word, a category or two abstract words; when nothing
    reaches that, the single best-supported topic is kept so a card is never topic-less,
    and a paper with no evidence at all falls back to `theory`, the catch-all for
    general-purpose methods.
    """
    scores = topic_scores(title, abstract, categories)
    ranked = sorted(SLUGS, key=lambda slug: (-scores[slug], SLUGS.index(slug)))
    chosen = [slug for slug in ranked if scores[slug] >= _MIN_SCORE][:MAX_TOPICS]
    if chosen:
        return chosen
    if scores[ranked[0]] > 0:
        return [ranked[0]]
    return ["theory"]


def prompt_listing() -> str:
    """The taxonomy as the prompt shows it: one `slug: Name - description` line per topic."""
    return "\n".join(f"- {t.slug}: {t.name} - {t.description}" for t in TOPICS)
