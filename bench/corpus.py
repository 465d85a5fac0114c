"""Generated knowledge corpora with planted questions, for the retrieval benchmark.

A corpus is the help centre of a shop selling products with made-up names. Each document
covers one product, each passage one topic of it (warranty, battery, delivery, ...), padded
with help-centre sentences, so that the common words of every question occur in thousands
of passages and only the product name and the topic together single out the answer. A third
of the passages mention another product in passing, so the name alone is not enough either.
The same seed always gives the same corpus."""

from __future__ import annotations

import random
from dataclasses import dataclass

PASSAGES_PER_DOCUMENT = 5

# (heading, answer sentence, questions): `{p}` is the product, `{n}` a number.
_TOPICS = (
    (
        "Warranty",
        "The {p} comes with a {n}-year warranty covering parts and labour.",
        ("How long is the warranty on the {p}?", "What warranty do I get with a {p}?"),
    ),
    (
        "Battery",
        "A full battery lets the {p} run for {n} hours before it needs charging.",
        ("How long does the {p} battery last?", "What is the battery life of the {p}?"),
    ),
    (
        "Delivery",
        "Orders for the {p} leave our warehouse within {n} days and delivery is tracked.",
        ("When will delivery of my {p} arrive?", "How fast is delivery of the {p}?"),
    ),
    (
        "Returns",
        "You can return an unused {p} within {n} days of delivery.",
        ("Can I return my {p}?", "How many days do I have to return a {p}?"),
    ),
    (
        "Cleaning",
        "Clean the {p} with a dry cloth; never use water or solvents on it, and let it rest "
        "{n} minutes after use.",
        ("How do I clean the {p}?", "Can I wash the {p} with water?"),
    ),
    (
        "Firmware",
        "Firmware updates for the {p} install overnight; version {n} added offline mode.",
        ("How do I update the firmware of the {p}?", "Which firmware does the {p} need?"),
    ),
    (
        "Dimensions",
        "The {p} measures {n} centimetres across; that size fits a standard shelf.",
        ("What size is the {p}?", "What are the dimensions of the {p}?"),
    ),
    (
        "Weight",
        "Without its stand the {p} weighs {n} grams.",
        ("What is the weight of the {p}?", "What does the {p} weigh?"),
    ),
    (
        "Colours",
        "The {p} is sold in {n} colours, including graphite and sand.",
        ("Which colours does the {p} come in?", "Is the {p} available in other colours?"),
    ),
    (
        "Price",
        "The {p} costs {n} euros including VAT, and prices never change at checkout.",
        ("How much does the {p} cost?", "What is the price of a {p}?"),
    ),
    (
        "Spare parts",
        "Spare parts for the {p} stay in stock for {n} years after the last sale.",
        ("Can I buy spare parts for my {p}?", "Are spare parts for the {p} available?"),
    ),
    (
        "Noise",
        "At full power the noise of the {p} stays below {n} decibels, so it is never loud.",
        ("How much noise does the {p} make?", "Is the {p} loud?"),
    ),
    (
        "Installation",
        "Installing the {p} takes about {n} minutes and needs only a screwdriver.",
        ("How do I install the {p}?", "Is installation of the {p} difficult?"),
    ),
    (
        "Subscription",
        "The {p} works without a subscription; the optional plan costs {n} euros a year.",
        ("Does the {p} need a subscription?", "Is there a subscription for the {p}?"),
    ),
    (
        "Power",
        "The {p} draws {n} watts and ships with a European plug adapter.",
        ("How much power does the {p} use?", "What plug does the {p} have?"),
    ),
    (
        "Pairing",
        "Pair the {p} with your phone by holding its button for {n} seconds.",
        ("How do I pair the {p} with my phone?", "Can the {p} connect to a phone?"),
    ),
    (
        "Materials",
        "The {p} is made of recycled aluminium and {n} percent recycled plastic.",
        ("What is the {p} made of?", "Which materials are used in the {p}?"),
    ),
    (
        "Safety",
        "Keep the {p} {n} centimetres away from curtains and never cover its vents.",
        ("Is the {p} safe near curtains?", "What safety rules apply to the {p}?"),
    ),
    (
        "Repairs",
        "Repairs of the {p} are done in our workshop within {n} working days.",
        ("Where can I get my {p} repaired?", "How long do repairs of the {p} take?"),
    ),
    (
        "Accessories",
        "A travel case and {n} replacement filters for the {p} are sold separately.",
        ("Which accessories fit the {p}?", "Can I buy a case for the {p}?"),
    ),
)

# Help-centre sentences every passage is padded with: their words occur everywhere.
_FILLER = (
    "Contact our support team if you need more help with your order.",
    "Most customers find the answer in the settings of their account.",
    "Check your email for the order confirmation and the tracking link.",
    "Our support team answers questions within one business day.",
    "Keep your receipt, because we ask for the order number when you contact us.",
    "You can change your delivery address from the order page before dispatch.",
    "We offer free standard delivery on orders over fifty euros.",
    "Read the quick start guide in the box before first use.",
    "If something is missing from the box, tell us within two weeks.",
    "Payment is taken when the order leaves the warehouse.",
    "Gift cards can be used for any product in the store.",
    "Sign in to your account to see how long your order will take.",
    "Questions about an invoice go to our billing team.",
    "Register the product in your account to get news about updates.",
    "The user manual can be downloaded from the product page at any time.",
    "Business customers can ask for a quote for larger orders.",
)

_MENTION = "It is also compatible with the {other}."
_CHATTER = ("", "Hi! ", "Hello, quick question: ", "Sorry to bother you, but ")
_ONSETS = "b c d f g k l m n p r s t v z br dr gr kr pl st tr".split()
_VOWELS = "a e i o u ai ou".split()
_CODAS = ("", "", "", "n", "r", "l", "x", "m")


@dataclass(frozen=True)
class Document:
    title: str
    content: str


@dataclass(frozen=True)
class PlantedQuestion:
    """A question whose right answer is exactly one passage of the corpus."""

    question: str
    answer: str
    title: str


@dataclass(frozen=True)
class Corpus:
    documents: list[Document]
    questions: list[PlantedQuestion]

    @property
    def passage_count(self) -> int:
        return len(self.documents) * PASSAGES_PER_DOCUMENT


def _product_names(rng: random.Random, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        syllables = rng.randint(2, 3)
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
        names.add((word + rng.choice(_CODAS)).capitalize())
    return sorted(names)


def generate(passages: int, *, questions: int = 200, seed: int = 7) -> Corpus:
    """A corpus of `passages` passages (rounded down to whole documents) and `questions`
    planted questions, each about a different passage."""
    rng = random.Random(seed)
    products = _product_names(rng, passages // PASSAGES_PER_DOCUMENT)
    rng.shuffle(products)
    documents: list[Document] = []
    answers: list[tuple[str, str, tuple[str, ...]]] = []
    for product in products:
        blocks = []
        for heading, answer, asked in rng.sample(_TOPICS, PASSAGES_PER_DOCUMENT):
            sentences = [answer.format(p=product, n=rng.randint(2, 99))]
            sentences += rng.sample(_FILLER, 2)
            if rng.random() < 0.33:
                sentences.insert(rng.randint(1, 2), _MENTION.format(other=rng.choice(products)))
            text = " ".join(sentences)
            blocks.append(f"## {heading}\n\n{text}")
            answers.append((product, text, asked))
        title = f"{product} help"
        documents.append(Document(title=title, content="\n\n".join(blocks) + "\n"))
    planted = []
    for product, text, asked in rng.sample(answers, min(questions, len(answers))):
        question = rng.choice(_CHATTER) + rng.choice(asked).format(p=product)
        planted.append(PlantedQuestion(question=question, answer=text, title=f"{product} help"))
    return Corpus(documents=documents, questions=planted)
