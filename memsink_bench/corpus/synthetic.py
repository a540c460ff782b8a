"""Seeded TinyStories-style story generator: the benchmark's built-in default corpus.

Why it exists: the benchmark must run offline and reproducibly, so it ships its own corpus in
the style of TinyStories (Eldan & Li 2023): simple words a small child knows, named children and
animals, everyday places and toys, feelings, short dialogue, a problem that gets resolved and
often a moral. Twelve plot structures, many template variants per step and combinatorial slot
filling (names, kinds, colours, toys, places, synonyms) keep stories nearly all distinct, so a
model trained on them cannot simply memorise a handful of texts.

Standard library only. Story i of generate_stories(n, seed) depends only on (seed, i).
"""

from __future__ import annotations

import random
import re

MIN_TOKENS, MAX_TOKENS = 80, 250

# ---------------------------------------------------------------------------------------------
# Vocabulary. Names never end in "s" so that "{name}'s" always reads naturally; no noun starts
# with a vowel letter that sounds like a consonant ("unicorn", "hour"), so the a/an rule below
# can go by the first letter alone.
# ---------------------------------------------------------------------------------------------

GIRL_NAMES = (
    "Lily", "Mia", "Sue", "Anna", "Emma", "Lucy", "Sara", "Amy", "Ella", "Zoe", "Ruby", "Daisy",
    "Rosie", "Molly", "Katie", "Jenny", "Nora", "Ivy", "Lola", "Maya", "Bella", "Grace", "Hannah",
    "Chloe", "Sophie", "Millie", "Poppy", "Jane", "Kim", "Abby", "Lila", "Tara", "Nina", "Olivia",
    "Ava", "Amelia", "Jill", "Kate", "Beth", "Clara", "Hazel", "Eva", "Layla", "Sally", "Rose",
    "Jasmine", "Wendy", "Penny", "Holly", "Fiona", "Heidi", "Lena",
)
BOY_NAMES = (
    "Tom", "Ben", "Max", "Sam", "Tim", "Jack", "Leo", "Joe", "Jake", "Bob", "Timmy", "Billy",
    "Danny", "Finn", "Luke", "Noah", "Oscar", "Ollie", "Ryan", "Eli", "Owen", "Henry", "Jimmy",
    "Toby", "Charlie", "Theo", "Adam", "Mark", "Dan", "Kevin", "Peter", "Paul", "Ned", "Zack",
    "Jacob", "Ethan", "Liam", "Lucas", "Mike", "Ted", "Roy", "Hugo", "Milo", "Arthur", "Eddie",
    "Freddie", "George", "Harry", "Jay", "Kyle", "Nick",
)
PET_NAMES = (
    "Spot", "Buddy", "Fluffy", "Coco", "Pip", "Rex", "Patch", "Sunny", "Snowy", "Ziggy", "Bingo",
    "Pepper", "Muffin", "Biscuit", "Peanut", "Ginger", "Rusty", "Shadow", "Twinkle", "Cookie",
    "Hoppy", "Tweety", "Button", "Pumpkin", "Honey", "Bubba", "Squeaky", "Dot", "Benny", "Lucky",
    "Toffee", "Nutmeg", "Pickle", "Waffle", "Bean", "Pebble", "Marble", "Sparky", "Frankie",
    "Fuzzy", "Dotty", "Rolo",
)

FUR = ("soft {fur} fur", "fluffy {fur} fur", "a fluffy tail", "a wet black nose")
ANIMALS = {
    "dog": FUR, "puppy": FUR, "cat": FUR + ("long white whiskers",), "kitten": FUR,
    "bunny": FUR + ("long soft ears",), "bear": FUR + ("big round ears",),
    "mouse": ("small pink ears", "a long thin tail", "soft gray fur"),
    "fox": ("bright orange fur", "a big bushy tail"), "squirrel": ("a big bushy tail",),
    "lamb": ("soft white wool",), "deer": ("brown fur with white spots", "long thin legs"),
    "monkey": ("a long curly tail",), "lion": ("a big fluffy mane", "golden fur"),
    "elephant": ("big floppy ears", "a long gray trunk"), "hedgehog": ("little prickly spines",),
    "pig": ("a curly pink tail",), "duck": ("yellow feathers", "orange feet"),
    "bird": ("shiny {color} feathers", "a little yellow beak"), "owl": ("big round eyes",),
    "frog": ("smooth green skin", "long jumpy legs"), "turtle": ("a hard green shell",),
    "goat": ("a little white beard",), "penguin": ("a round white tummy",),
}
KID_LOOKS = (
    "curly brown hair", "long yellow hair", "short black hair", "red hair", "big brown eyes",
    "bright blue eyes", "rosy cheeks", "a big gap in {his} teeth", "freckles on {his} nose",
)
ADJECTIVES = (
    "little", "happy", "kind", "curious", "shy", "silly", "sweet", "friendly", "playful",
    "cheerful", "gentle", "clever", "small", "funny", "young", "smart", "busy", "jolly", "caring",
    "helpful", "lively", "quiet", "good",
)
COLORS = ("red", "blue", "green", "yellow", "pink", "purple", "orange", "white", "brown", "gold")
SIZES = ("little", "big", "shiny", "new", "small", "pretty", "special", "tiny", "old", "bright")
TOYS = (
    "ball", "kite", "doll", "teddy bear", "toy car", "toy boat", "toy train", "hat", "book", "drum",
    "blanket", "balloon", "yo-yo", "truck", "robot", "whistle", "scarf", "umbrella",
    "spinning top", "music box", "bucket", "puppet", "jump rope", "toy plane", "rocket",
    "bear", "bike", "wagon", "crown", "flute", "bracelet", "necklace", "ribbon",
)
PARENTS = (  # (noun, how the child calls them, he, him, his)
    ("mom", "Mom", "she", "her", "her"), ("dad", "Dad", "he", "him", "his"),
    ("mommy", "Mommy", "she", "her", "her"), ("daddy", "Daddy", "he", "him", "his"),
    ("grandma", "Grandma", "she", "her", "her"), ("grandpa", "Grandpa", "he", "him", "his"),
)
PLACES = {
    "park": ("in the park", ("tall trees", "a big slide", "green grass", "a wooden bench",
                             "a little pond", "lots of flowers")),
    "garden": ("in the garden", ("pretty flowers", "a small path", "a big apple tree",
                                 "orange carrots", "buzzing bees", "a tiny fence")),
    "forest": ("in the forest", ("tall trees", "soft green moss", "a little stream",
                                 "big gray rocks", "red mushrooms", "singing birds")),
    "beach": ("at the beach", ("soft sand", "big waves", "shiny shells", "little crabs",
                               "white birds", "warm rocks")),
    "meadow": ("in the meadow", ("tall grass", "yellow flowers", "busy bees",
                                 "little butterflies", "a big old tree")),
    "playground": ("at the playground", ("a tall slide", "two swings", "a sandbox",
                                         "a merry-go-round", "a climbing wall")),
    "pond": ("by the pond", ("green lily pads", "quacking ducks", "tall reeds", "little fish",
                             "a wooden bridge")),
    "hill": ("on the hill", ("soft grass", "a big old tree", "lots of daisies",
                             "a bench at the top")),
    "farm": ("on the farm", ("a red barn", "happy cows", "a muddy pond", "tall corn",
                             "little chicks", "a big haystack")),
    "backyard": ("in the backyard", ("a swing set", "a sandbox", "a vegetable patch",
                                     "a tall fence", "a bird feeder")),
    "lake": ("by the lake", ("clear blue water", "a little dock", "smooth stones",
                             "swimming ducks", "tall pine trees")),
}
OUTDOOR_SPOTS = (
    "under a bush", "behind a big tree", "in the tall grass", "near the fence", "under a bench",
    "by a big rock", "inside a hollow log", "next to the flowers", "under a pile of leaves",
    "behind the gate", "under the slide", "in a patch of clover",
)
INDOOR_SPOTS = (
    "under the bed", "behind the couch", "in the toy box", "under the table", "in the closet",
    "behind the door", "in the laundry basket", "under a pillow", "next to the bookshelf",
    "inside a big box", "under the stairs", "behind the curtains",
)
GAMES = (  # (infinitive, past tense)
    ("play tag", "played tag"), ("play hide and seek", "played hide and seek"),
    ("play catch", "played catch"), ("build a fort", "built a fort"),
    ("go on the swings", "went on the swings"), ("draw with chalk", "drew with chalk"),
    ("blow bubbles", "blew bubbles"), ("jump rope", "jumped rope"),
    ("have a tea party", "had a tea party"), ("look for bugs", "looked for bugs"),
    ("make mud pies", "made mud pies"), ("play pretend", "played pretend"),
)

# Synonym pools: a template slot like {happy} is re-drawn every time it is used, which is what
# multiplies the number of distinct sentences. Values may themselves contain slots.
POOLS = {
    "happy": ("happy", "glad", "very happy", "so happy", "full of joy", "cheerful",
              "as happy as could be"),
    "sad": ("sad", "very sad", "so sad", "upset", "unhappy", "a little sad", "gloomy"),
    "scared": ("scared", "afraid", "very scared", "a little scared", "frightened", "nervous"),
    "proud": ("proud", "very proud", "so proud", "proud of {himself}", "proud and happy"),
    "excited": ("excited", "very excited", "so excited", "too excited to sit still",
                "bursting with joy"),
    "ran": ("ran", "hurried", "rushed", "raced", "dashed"),
    "walked": ("walked", "went", "skipped", "wandered"),
    "big": ("big", "huge", "very big", "giant"),
    "little": ("little", "small", "tiny"),
    "pretty": ("pretty", "beautiful", "lovely", "nice", "wonderful"),
    "smiled": ("smiled", "grinned", "beamed", "smiled a big smile", "laughed"),
    "then": ("then", "after that,", "soon", "next,", "a moment later,"),
    "suddenly": ("suddenly,", "all of a sudden,", "just then,", "then,"),
    "had_fun": ("had so much fun", "had a lot of fun", "had a great time", "had the best day",
                "laughed and played", "had a wonderful time"),
    "one_day": ("one day", "one sunny day", "one morning", "one bright morning", "one afternoon",
                "one sunny afternoon", "early one morning", "one warm day", "one fine day",
                "one summer day", "one spring morning", "on a sunny day", "on a warm afternoon",
                "one Saturday", "one cool autumn day", "one clear morning", "after lunch one day"),
    "very": ("very", "so", "really"),
    "much": ("very much", "so much", "more than anything", "a lot"),
    "snack": ("an apple", "a cookie", "a sandwich", "some grapes", "a banana", "a muffin",
              "some crackers", "a pear", "some cheese", "a jam sandwich", "some carrot sticks"),
    "food": ("apples", "pancakes", "carrots", "cheese", "cookies", "soup", "berries", "bananas",
             "noodles", "peas", "honey on toast", "warm bread"),
    "fur": ("brown", "white", "gray", "black", "golden", "orange", "spotted"),
    "hobby": ("play outside", "run and jump", "sing songs", "draw pictures", "look at books",
              "play with {his} toys", "dance", "build with blocks", "splash in puddles",
              "chase butterflies", "climb trees", "help {his} {parent}", "dig in the dirt",
              "play ball", "blow bubbles", "pick flowers", "collect pretty rocks",
              "make funny faces", "roll down hills", "count the clouds", "hum little songs",
              "watch the birds", "play dress-up", "hop like a frog"),
    "softly": ("softly", "gently", "quietly", "in a small voice"),
    "sound": ("a tiny sound", "a little noise", "a soft cry", "a funny sound", "a sad little sound"),
    "whole_day": ("all day long", "for a long time", "until it was time to go home",
                  "until the sun went down", "all afternoon", "for the rest of the day"),
    "hugged": ("hugged", "gave a big hug to", "held on tight to"),
    "tear": ("a big tear rolled down {his} cheek", "{his} eyes filled with tears",
             "{he} wanted to cry", "{his} lip began to shake"),
    "idea": ("{he} had an idea", "{he} had a good idea", "an idea popped into {his} head",
             "{he} knew just what to do"),
    "good_friend": ("a good friend", "a great friend", "a true friend", "the best friend ever",
                    "so kind"),
    "glad_word": ("thank you", "thank you so much", "thanks", "thank you very much"),
}


# ---------------------------------------------------------------------------------------------
# Text plumbing
# ---------------------------------------------------------------------------------------------

class _Slots(dict):
    """Template context: fixed story facts, plus synonym pools re-drawn on every lookup."""

    def __init__(self, rng: random.Random, facts: dict[str, str] | None = None):
        super().__init__(facts or {})
        self.rng = rng

    def __missing__(self, key: str) -> str:
        return self.rng.choice(POOLS[key]).format_map(self)


_ARTICLE = re.compile(r"\b([Aa])n? (?=([A-Za-z]))")


def _fix_articles(text: str) -> str:
    """Templates always write "a"; choose a/an from the next word so slot filling stays simple."""
    def repl(m: re.Match) -> str:
        return m.group(1) + ("n " if m.group(2).lower() in "aeiou" else " ")
    return _ARTICLE.sub(repl, text)


_SENTENCE_START = re.compile(r'(^[^A-Za-z]*|[.!?] +|\." +| ")([a-z])')


def _capitalize(text: str) -> str:
    """Upper-case sentence starts: the first letter, after ". ", after '." ' and after an opening
    quote (' "'), but not dialogue tags after !" ?" ," ('"Look!" she said.' keeps "she")."""
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


class _Story:
    """Collects sentences into paragraphs; optional ones may later be dropped to fit the length."""

    def __init__(self, rng: random.Random, ctx: _Slots):
        self.rng, self.ctx = rng, ctx
        self.paras: list[list[tuple[str, bool]]] = [[]]
        self.intro_end = 0   # where hero/setting fillers go: right after the opening

    def render(self, template: str) -> str:
        return _capitalize(_fix_articles(template.format_map(self.ctx)))

    def set(self, key: str, template: str) -> None:
        """Fix a story fact now (slots inside it are drawn once, e.g. a place or a helper)."""
        self.ctx[key] = template.format_map(self.ctx)

    def say(self, *variants: str, optional: bool = False) -> None:
        self.paras[-1].append((self.render(self.rng.choice(variants)), optional))

    def maybe(self, *variants: str, p: float = 0.6) -> None:
        """A colour sentence: present with probability p and removable if the story runs long."""
        if self.rng.random() < p:
            self.say(*variants, optional=True)

    def end(self, *variants: str, p: float = 0.75) -> None:
        """The closing moral; TinyStories often, but not always, ends with one."""
        if self.rng.random() < p:
            self.say(*variants)

    def para(self) -> None:
        """Start a new paragraph (TinyStories texts have several short ones)."""
        if self.paras[-1]:
            self.paras.append([])

    def n_tokens(self) -> int:
        return sum(len(text.split()) for para in self.paras for text, _ in para)

    def text(self) -> str:
        return "\n\n".join(" ".join(t for t, _ in para) for para in self.paras if para)


# ---------------------------------------------------------------------------------------------
# Characters, setting and the shared opening
# ---------------------------------------------------------------------------------------------

def _pronouns(female: bool) -> tuple[str, str, str, str]:
    """he/him/his/himself: every template uses these slots, so agreement is automatic."""
    return ("she", "her", "her", "herself") if female else ("he", "him", "his", "himself")


def _character(rng: random.Random, avoid: set[str]) -> dict[str, str]:
    """A child or an animal with a name, gender-matched pronouns and a look."""
    female = rng.random() < 0.5
    if rng.random() < 0.55:
        kind, pool = ("girl", GIRL_NAMES) if female else ("boy", BOY_NAMES)
        looks = KID_LOOKS
    else:
        kind = rng.choice(tuple(ANIMALS))
        pool = PET_NAMES if rng.random() < 0.6 else (GIRL_NAMES if female else BOY_NAMES)
        looks = ANIMALS[kind]
    name = rng.choice([n for n in pool if n not in avoid])
    he, him, his, himself = _pronouns(female)
    return {"name": name, "kind": kind, "adj": rng.choice(ADJECTIVES), "he": he, "him": him,
            "his": his, "himself": himself, "look": rng.choice(looks)}


def _context(rng: random.Random) -> _Slots:
    """Draw the hero, a friend, a grown-up, a place and a toy; arcs may override any of them."""
    hero = _character(rng, set())
    friend = _character(rng, {hero["name"]})
    ctx = _Slots(rng, hero)
    ctx.update({"f" + k: v for k, v in friend.items()})
    parent = rng.choice(PARENTS)
    ctx.update(zip(("parent", "parent_call", "phe", "phim", "phis"), parent))
    ctx["fintro"] = _friend_intro(ctx, rng)
    _set_place(ctx, rng, rng.choice(tuple(PLACES)))
    toy, color = rng.choice(TOYS), rng.choice(COLORS)
    size = rng.choice(SIZES) + " " if rng.random() < 0.5 else ""
    ctx.update(toy=toy, color=color, obj=f"{size}{color} {toy}", cobj=f"{color} {toy}")
    ctx["look"] = ctx["look"].format_map(ctx)
    ctx["flook"] = ctx["flook"].format_map(ctx)
    return ctx


def _friend_intro(ctx: _Slots, rng: random.Random) -> str:
    """First mention of the friend: "Pip the bunny", "her friend Tom", "a shy boy named Tom"."""
    options = ["{his} friend {fname}", "a {fadj} {fkind} named {fname}"]
    if ctx["fkind"] not in ("girl", "boy"):
        options.append("{fname} the {fkind}")
    return rng.choice(options).format_map(ctx)


def _set_place(ctx: _Slots, rng: random.Random, place: str) -> None:
    """Set the place with two of its features, so descriptions match where the story happens."""
    in_place, features = PLACES[place]
    f1, f2 = rng.sample(features, 2)
    near = "garden" if place == "backyard" else place   # "lived near a big backyard" reads oddly
    ctx.update(place=place, in_place=in_place, near_place=near, feature1=f1, feature2=f2)


def _set_helper(s: _Story, p_parent: float) -> None:
    """Who steps in to help: the grown-up (p_parent) or the friend, with matching pronouns."""
    c = s.ctx
    if s.rng.random() < p_parent:
        helper = f"{c['his']} {c['parent']}"
        c.update(helper=helper, helper_intro=helper, helper_call=c["parent_call"],
                 hhe=c["phe"], hhim=c["phim"], hhis=c["phis"])
    else:
        c.update(helper=c["fname"], helper_intro=c["fintro"], helper_call=c["fname"],
                 hhe=c["fhe"], hhim=c["fhim"], hhis=c["fhis"])


def _opening(s: _Story) -> None:
    """Introduce the hero the way TinyStories does ("Once upon a time, there was ...")."""
    s.say("once upon a time, there was a {adj} {kind} named {name}.",
          "once upon a time, in a {little} town, there lived a {adj} {kind} named {name}.",
          "there was once a {adj} {kind} named {name}.",
          "once there was a {adj} {kind}. {his} name was {name}.",
          "{name} was a {adj} {kind} who lived near a {big} {near_place}.",
          "long ago, there lived a {adj} {kind} called {name}.",
          "once upon a time, a {adj} {kind} named {name} lived in a {little} house.",
          "in a {little} house by a {big} {near_place}, there lived a {adj} {kind} named {name}.",
          "{name} was a {adj} {kind}.",
          "once upon a time, there lived a {adj} {kind}. Everyone called {him} {name}.")
    s.maybe("{he} had {look}.", "{name} had {look} and a big smile.", p=0.45)
    s.maybe("{he} loved to {hobby}.", "every day, {name} liked to {hobby}.",
            "more than anything, {name} loved to {hobby}.", p=0.5)


FILLERS = (  # hero/setting sentences that fit any first paragraph; used to reach MIN_TOKENS
    "{he} loved to {hobby}.",
    "{he} had {look}.",
    "{name} lived in a {little} house with {his} {parent}.",
    "every day, {name} liked to {hobby}.",
    "{name} had a big smile and a kind heart.",
    "{name} liked the {place} because it had {feature1} and {feature2}.",
    "{name} always said please and thank you.",
    "{his} favorite color was {color}.",
    "{his} favorite food was {food}.",
    "at night, {he} liked to look at the stars from {his} window.",
    "{name} liked to sing a little song when {he} was happy.",
    "{name} was a good friend to everyone {he} met.",
    "{he} liked to ask lots of questions about everything.",
    "{name} loved {his} {parent} {much}.",
    "{he} liked the way the warm sun felt on {his} face.",
)


# ---------------------------------------------------------------------------------------------
# Story arcs. Each adds the middle and the end of a story to `s` (the opening is already there).
# ---------------------------------------------------------------------------------------------

def _arc_lost(s: _Story) -> None:
    """Lost and found: loss, a search, help from someone, joy and care afterwards."""
    home = s.rng.random() < 0.5
    spots = s.rng.sample(INDOOR_SPOTS if home else OUTDOOR_SPOTS, 4)
    s.ctx.update(s1=spots[0], s2=spots[1], s3=spots[2], s4=spots[3])
    s.ctx["where"] = "at home" if home else s.ctx["in_place"]
    _set_helper(s, 0.5)
    s.say("{name} had a {obj} that {he} loved {much}.", "{his} favorite toy was a {obj}.",
          "{name} had a {obj}. It was {his} favorite toy in the whole world.",
          "{name}'s best toy was a {obj}.")
    s.maybe("{he} took it everywhere {he} went.", "{he} played with it every day.",
            "{he} even slept next to it at night.", "{he} never went anywhere without it.")
    s.para()
    s.say("{one_day}, {name} wanted to play with {his} {toy}, but {he} could not find it.",
          "{one_day}, {name} was playing with {his} {toy} {where}. When {he} looked again, "
          "the {toy} was gone!",
          "{one_day}, {name} reached for {his} {toy}, but it was not there.")
    s.say('"Where is my {toy}?" {name} cried.', '"Oh no! My {toy} is gone!" said {name}.',
          '{name} looked around. "Where did my {toy} go?" {he} asked.',
          '"My {toy}! Where are you?" {name} called.')
    s.say("{he} looked {s1}, but it was not there.", "first, {he} looked {s1}. It was not there.",
          "{he} searched {s1}. Nothing!")
    s.say("{he} looked {s2}, but it was not there either.", "{then} {he} looked {s2}. No {toy}!",
          "{he} checked {s2}, but the {toy} was not there.")
    s.maybe("{name} felt {sad}, and {tear}.", "{name} sat down and felt {sad}.", "{tear}.")
    s.para()
    s.say("{then} {helper_intro} came by.", "just then, {helper_intro} walked over.",
          "{helper_intro} saw {name} and came to see what was wrong.")
    s.say('"Why are you sad, {name}?" {hhe} asked.', '"What is wrong?" asked {helper}.',
          '"Are you okay?" {helper} asked {softly}.')
    s.say('"I lost my {toy}," said {name}.', '"I cannot find my {toy}," {name} said {softly}.',
          '"My {color} {toy} is lost," {name} said.')
    s.say('"Do not worry. I will help you look," said {helper}.',
          '"Don\'t worry, we will find it together," {hhe} said.',
          '"Let\'s look for it together," said {helper}.')
    s.say("they looked {s3} together.", "{name} and {helper} looked high and low.",
          "together, they searched {s3}.")
    if s.rng.random() < 0.5:   # who spots it decides who speaks next
        s.say("{suddenly} {helper} saw something {color} {s4}.")
        s.say('"Look!" {hhe} said. "Is that your {toy}?"', '"There it is!" {hhe} shouted.')
    else:
        s.say("{suddenly} {name} spotted something {color} {s4}.")
        s.say('"What is that?" {he} asked, pointing.', '"Look! There it is!" {he} shouted.')
    s.say("it was the {obj}!", "it was {his} {obj}! It had been there all along.",
          "yes, it was the {toy}!")
    s.para()
    s.say("{name} was {happy}. {he} {hugged} {his} {toy}.",
          "{name} jumped up and down with joy.", "{name} picked up the {toy} and {smiled}.")
    s.say('"{glad_word}, {helper_call}!" {he} said.', '"{glad_word}!" said {name}.')
    s.end("from that day on, {name} always put {his} {toy} in a safe place.",
          "{name} learned to take good care of {his} things.",
          "{name} learned that it is good to ask for help when you need it.",
          "after that, {name} kept {his} {toy} close.")


def _arc_share(s: _Story) -> None:
    """Sharing conflict: refusing to share, loneliness, a change of heart, play together."""
    s.say("{one_day}, {name} got a new {cobj}.",
          "{name}'s {parent} gave {him} a new {cobj} for {his} birthday.",
          "{one_day}, {name} found a {obj} in a box of old toys.",
          "{name} had a {obj} that {he} had just gotten as a gift.")
    s.say("{he} loved it {much}.", "it was the best toy {he} had ever had.",
          "{he} thought it was the best thing in the world.")
    s.maybe("{he} showed it to everyone.", "{he} did not want to let it go, not even for a minute.")
    s.para()
    s.say("{name} took {his} {toy} and went to play {in_place}.",
          "later, {name} played with the {toy} {in_place}.",
          "{name} carried the {toy} {in_place} to play.")
    s.say("there {he} saw {fintro}.", "{fintro} was there too.", "soon, {fintro} came along.")
    s.say('"Wow, what a {pretty} {toy}!" said {fname}. "Can I play with it too?"',
          '"Can I play with your {toy}?" asked {fname}.',
          '{fname} looked at the {toy}. "Can I have a turn, please?" {fhe} asked.',
          '"I like your {toy}," said {fname}. "May I try it?"')
    s.say('{name} held the {toy} tight. "No! It is mine!" {he} said.',
          '"No, it is my {toy}," said {name}. {he} turned away.',
          '{name} hid the {toy} behind {his} back. "No, you can\'t," {he} said.')
    s.say("{fname} looked {sad} and walked away.",
          "{fname} felt {sad}. {fhe} sat down all alone under a tree.",
          "{fname}'s face fell, and {fhe} went to sit by {fhimself}.")
    s.para()
    s.say("{name} played with the {toy} by {himself}.", "{name} tried to play alone.",
          "{name} kept the {toy} all to {himself}.")
    s.say("but it was not fun at all.", "but soon {he} felt bored and lonely.",
          "but playing alone was not much fun.")
    s.maybe("{he} looked over at {fname}, who was still sitting by {fhimself}.",
            "{name} kept looking over at {fname}.")
    s.say("{name} thought about how {fname} felt.", "{name} began to feel bad inside.",
          "{name} remembered how sad {fname} had looked.")
    s.say('{he} walked over to {fname} and said, "I am sorry. Do you want to play with me?"',
          '{he} went back to {fname}. "I am sorry," {he} said. "Let\'s play together."',
          '{name} held out the {toy}. "Here, you can have a turn," {he} said.')
    s.say('{fname} {smiled}. "Yes, please!"', '{fname}\'s face lit up. "{glad_word}, {name}!" {fhe} said.')
    s.para()
    s.say("they took turns with the {toy}.", "they played with the {toy} together {whole_day}.",
          "first {name} had a turn, then {fname} had a turn.")
    s.maybe("{fname} showed {name} a new game.", "they laughed and laughed.",
            "{fname} had some good ideas for games.")
    s.say("they {had_fun}.", "it was much more fun with two.", "playing together was the best.")
    s.end("{name} learned that sharing is more fun than playing alone.",
          "{name} learned that sharing makes everyone happy.",
          "from that day on, {name} always shared {his} toys with {his} friends.",
          "sharing made {name} feel warm and happy inside.")


FEARS = (  # (fear, place, in_place override or None, when, try, did, after)
    ("the tall slide", "playground", None, "{one_day}", "go down the tall slide",
     "{he} climbed up the ladder and slid all the way down. Whoosh!",
     "{he} went down the slide again and again."),
    ("the big waves", "beach", None, "{one_day}", "play in the waves",
     "{he} walked into the water, and a little wave tickled {his} toes.",
     "soon {he} was jumping over the waves and laughing."),
    ("the deep water", "lake", None, "{one_day}", "swim in the lake",
     "{he} stepped into the cool water and paddled with {his} arms.",
     "{he} splashed and kicked and floated like a duck."),
    ("the dark", "backyard", "in {his} room", "one night", "sleep with the light off",
     "{he} turned off the light and looked around. It was just {his} room, with {his} toys "
     "and {his} bed.", "soon {he} fell fast asleep."),
    ("climbing trees", "backyard", None, "{one_day}", "climb the old apple tree",
     "{he} put {his} foot on the first branch and pulled {himself} up.",
     "from up high, {he} could see the whole street!"),
    ("the big dog next door", "backyard", None, "{one_day}", "pet the big dog",
     "{he} slowly held out {his} hand. The dog sniffed it and wagged its tail.",
     "the dog licked {his} hand, and {name} giggled."),
    ("riding a bike", "park", None, "{one_day}", "ride the new bike",
     "{he} pushed the pedals, and the bike rolled forward.",
     "{he} rode all the way around the park."),
    ("the high swing", "playground", None, "{one_day}", "swing up high",
     "{he} held on tight and pushed with {his} legs.",
     "{he} went higher and higher, up toward the sky!"),
    ("thunder", "backyard", "at home", "one stormy night", "watch the storm from the window",
     "{he} sat by the window. Boom! The thunder was loud, but {he} stayed.",
     "the rain on the window sounded like a soft song."),
    ("going to a new school", "playground", "at {his} new school", "on the first day",
     "go into the classroom", "{he} walked in and saw lots of kids, books and toys.",
     "the teacher {smiled} and gave {him} a shiny star sticker."),
    ("the big horse", "farm", None, "{one_day}", "ride the gentle old horse",
     "{he} climbed up onto the saddle, and the horse walked slowly around the field.",
     "the horse was soft and warm, and it went clip-clop, clip-clop."),
    ("bugs", "garden", None, "{one_day}", "hold a little ladybug",
     "{he} held out one finger, and the ladybug crawled onto it. It tickled!",
     "the ladybug opened its wings and flew away."),
)


def _arc_fear(s: _Story) -> None:
    """Fear overcome: a named fear, encouragement from a helper, a first try, pride."""
    fear, place, in_place, when, try_, did, after = s.rng.choice(FEARS)
    _set_place(s.ctx, s.rng, place)
    if in_place:
        s.set("in_place", in_place)
    s.ctx["fear"] = fear
    for key, template in (("when", when), ("did", did), ("after", after), ("try_", try_)):
        s.set(key, template)
    _set_helper(s, 1.0 if in_place else 0.6)   # at night or at school it is a grown-up
    s.say("{name} was scared of {fear}.", "there was one thing {name} did not like: {fear}.",
          "{name} had a secret. {he} was afraid of {fear}.",
          "{name} was brave about many things, but not about {fear}.")
    s.maybe("every time {he} thought about it, {his} tummy felt funny.",
            "{he} always stayed far away from it.", "just thinking about it made {him} shiver.")
    s.para()
    s.say("{when}, {name} was {in_place} with {helper_intro}.",
          "{when}, {helper_intro} and {name} were {in_place}.")
    s.say('"Do you want to {try_}?" asked {helper}.', '{helper} said, "Why don\'t you {try_}?"',
          '"Would you like to {try_}?" {helper} asked {softly}.')
    s.say('{name} shook {his} head. "I am too scared," {he} whispered.',
          '"No, I am scared," said {name}.', '"What if something bad happens?" asked {name}.')
    s.say('{helper} {smiled}. "It is okay to be scared," {hhe} said. "I will be right here."',
          '"You are braver than you think," said {helper}. "I will stay with you."',
          '"Let\'s try together," said {helper} {softly}. "Just one little try."')
    s.para()
    s.say("{name} took a deep breath.", "{name} closed {his} eyes and counted to three.",
          "{name} thought about it for a long time. Then {he} nodded.")
    s.say("{did}")
    s.say("it was not scary at all!", "it was fun!", "it was not so bad after all.",
          "{name} could not believe it. It was easy!")
    s.say('"I did it!" {name} shouted.', '"Look at me! I did it!" {he} cried.',
          '"{helper_call}, I did it!" {name} called.')
    s.maybe("{after}", p=0.7)
    s.say("{name} felt {proud}.", '{helper} clapped. "I am so proud of you!" {hhe} said.',
          "{helper} gave {name} a big high five.")
    s.end("from that day on, {name} was not scared of {fear} anymore.",
          "{name} learned that being brave means trying, even when you feel scared.",
          "{name} learned that a scary thing can become a fun thing.")


HELP_PROBLEMS = (  # (what happened, what the friend says, how the hero helps)
    ("{fname}'s kite was stuck high up in a tree.",
     '"My kite is stuck, and I cannot reach it," said {fname}.',
     "{name} found a long stick. {he} reached up and gave the kite a little push. Down it came!"),
    ("{fname} had fallen down and hurt {fhis} knee.", '"My knee hurts," {fname} cried.',
     "{name} helped {fname} stand up. Then {name} walked with {fname} to {fhis} mom, who put a "
     "bandage on the knee."),
    ("{fname}'s ball had rolled into the water.",
     '"My ball is in the water, and I cannot swim," said {fname}.',
     "{name} found a long branch. {he} pulled the ball to the edge, slowly, slowly, until "
     "{fname} could pick it up."),
    ("{fname} wanted an apple from a tree, but the apples were too high.",
     '"I am too small to reach them," said {fname}.',
     "{name} found a little wooden box. {fname} stood on it and picked two red apples, one for "
     "each of them."),
    ("{fname} was lost and could not find the way home.",
     '"I do not know where my house is," said {fname}.',
     "{name} knew the way. {he} walked with {fname} all the way home."),
    ("{fname} had dropped a basket of berries all over the ground.",
     '"Now my berries are everywhere," said {fname}.',
     "{name} knelt down and helped {fhim} pick up every berry. Soon the basket was full again."),
    ("{fname} was trying to carry a heavy box, but it was too heavy.",
     '"I cannot carry it by myself," said {fname}.',
     "{name} took one side, and {fname} took the other. Together, they carried the box all "
     "the way home."),
    ("{fname}'s sand castle had been knocked over.",
     '"I worked so hard on it, and now it is gone," said {fname}.',
     "{name} sat down next to {fhim}. Together, they built a new castle, even bigger than "
     "before."),
    ("{fname}'s shoelace was untied, and {fhe} kept tripping.",
     '"I do not know how to tie it," said {fname}.',
     "{name} showed {fhim} how: make a loop, go around, and pull it through. Now the shoe "
     "was tight."),
    ("{fname} had spilled all of {fhis} crayons, and they rolled everywhere.",
     '"I will never find them all," said {fname}.',
     "{name} helped {fhim} look under the bench and in the grass, and they found every one."),
)


def _arc_help(s: _Story) -> None:
    """Helping a friend: someone in trouble, the hero's idea, thanks and friendship."""
    what, says, fix = s.rng.choice(HELP_PROBLEMS)
    s.para()
    s.say("{one_day}, {name} was playing {in_place} when {he} heard someone crying.",
          "{one_day}, {name} went for a walk {in_place}. {he} heard {sound}.",
          "{one_day}, {name} {walked} to the {place}. There {he} heard {sound}.")
    s.say("it was {fintro}.", "{he} looked and saw {fintro}.", "{he} turned and saw {fintro}.")
    s.maybe("{fname} had {flook}, but today {fhe} looked {sad}.", p=0.4)
    s.say(what)
    s.say('"What is wrong?" asked {name}.', '{name} walked over. "Are you okay?" {he} asked.',
          '"Can I help you?" asked {name}.')
    s.say(says)
    s.para()
    s.say("{name} thought and thought. Then {idea}!", "{name} wanted to help.",
          '"I can help," said {name}.')
    s.say(fix)
    s.say("{fname} was {happy}.", "{fname} stopped crying and {smiled}.",
          "{fname} wiped {fhis} eyes and {smiled}.")
    s.say('"Thank you, {name}! You are {good_friend}," said {fname}.',
          '"{glad_word}!" {fname} said. {fhe} gave {name} a big hug.')
    s.maybe("{name} {smiled}. Helping {fname} made {him} feel warm inside.",
            "{name} felt {proud}.")
    s.maybe("they {had_fun} together after that.", "then they played together {whole_day}.")
    s.end("from that day on, {name} and {fname} were best friends.",
          "{name} learned that helping others makes you feel good inside.",
          "{name} learned that a good friend always helps.")


TRIPS = {  # destination -> (where you are once there, sights...)
    "zoo": ("at the zoo", "a tall giraffe", "a big gray elephant", "a lion with a fluffy mane",
            "funny monkeys swinging in the trees", "a sleepy bear",
            "a zebra with black and white stripes", "pink birds standing on one leg"),
    "beach": ("at the beach", "big blue waves", "shiny shells in the sand", "a little crab",
              "a boat far away", "white birds flying over the water", "a kite shaped like a fish"),
    "farm": ("on the farm", "pink pigs rolling in the mud", "a brown cow", "little yellow chicks",
             "a horse eating hay", "fluffy white sheep", "a big red tractor"),
    "lake": ("at the lake", "ducks swimming in a row", "a green frog on a rock",
             "little silver fish", "a wooden boat", "a turtle sunning itself on a log"),
    "mountains": ("in the mountains", "tall mountains with snow on top", "a rushing river",
                  "a deer in the trees", "a rainbow over the hills", "a big eagle in the sky"),
    "aquarium": ("at the aquarium", "fish of every color", "a smiling dolphin",
                 "a big old turtle", "a funny octopus", "a shark with lots of teeth",
                 "a tiny orange seahorse"),
    "city": ("in the city", "tall buildings", "a big fountain", "a man playing music",
             "a red bus", "pigeons on the sidewalk", "a shop full of toys"),
    "fair": ("at the fair", "a big wheel that went round and round", "a clown with a red nose",
             "pink cotton candy", "a merry-go-round with painted horses", "a juggler"),
}
TRIP_TROUBLES = (
    ("{name} got an ice cream cone. But then it fell on the ground. Splat!",
     "{name} wanted to cry.",
     "{his} {parent} {smiled} and shared {phis} ice cream with {him}."),
    ("{name} looked at the {sight} for so long that {he} could not see {his} {parent} anymore.",
     "{he} felt {scared}. Then {he} remembered to stand still and wait.",
     "soon {his} {parent} found {him} and gave {him} a big hug."),
    ("after a while, {name}'s legs got tired from walking.", '"I cannot walk anymore," {he} said.',
     "{his} {parent} lifted {him} up onto {phis} shoulders. Now {he} could see everything!"),
    ("then {name} dropped {his} {toy}, and it rolled away.", "{he} ran after it.",
     "a kind lady picked it up and gave it back. \"Here you go,\" she said with a smile."),
    ("then dark clouds came, and it began to rain.", '"Oh no!" said {name}.',
     "{his} {parent} opened a big umbrella, and they stayed dry and cozy underneath."),
)


def _arc_trip(s: _Story) -> None:
    """A trip: excitement, the journey, sights, a small trouble, a sleepy ride home."""
    dest = s.rng.choice(tuple(TRIPS))
    at_dest, *sights = TRIPS[dest]
    s1, s2, s3 = s.rng.sample(sights, 3)
    sight = re.sub(r"^an? ", "", s1.split(" with ")[0].split(" in ")[0])
    s.ctx.update(dest=dest, at_dest=at_dest, s1=s1, s2=s2, s3=s3, sight=sight)
    trouble, feel, fix = s.rng.choice(TRIP_TROUBLES)
    s.para()
    s.say("{one_day}, {name} went on a trip to the {dest} with {his} {parent}.",
          "{one_day}, {name}'s {parent} said, \"Today we are going to the {dest}!\"",
          "{one_day}, {name} and {his} {parent} went to visit the {dest}.")
    s.say("{name} was {excited}.", '"Yay!" {name} shouted. {he} was {excited}.',
          "{name} had never been to the {dest} before.")
    s.maybe("{he} packed {his} {obj} and {snack} in a little bag.",
            "{he} put on {his} {color} shoes and waited by the door.")
    s.say("they went in {his} {parent}'s car.", "they rode on a {big} bus.",
          "they took a fast train.", "they rode there in an old blue van.")
    s.maybe("{name} looked out the window and saw cows, trees and a long river.",
            '"Are we there yet?" {name} asked again and again.',
            "on the way, they sang songs and played a guessing game.")
    s.para()
    s.say("{at_dest}, {name} saw {s1}.", "the first thing {name} saw was {s1}.",
          "{at_dest}, the first thing {name} saw was {s1}.")
    s.say("{he} also saw {s2}.", "{then} {he} saw {s2}.", "{name} spotted {s2}, too.")
    s.say('"Look, {parent_call}!" {he} said. "I love it here!"',
          '"Wow!" said {name}. "Look at that!"', "{name} laughed and clapped {his} hands.",
          "{name}'s eyes were wide with wonder.")
    s.maybe("{he} saw {s3} too.", "later, they found {s3}.")
    s.say(trouble)
    s.say(feel)
    s.say(fix)
    s.para()
    s.say("when the sun went down, it was time to go home.",
          "at the end of the day, they went back home.",
          "soon the sky turned orange, and it was time to leave.")
    s.say("{name} was tired but {happy}.", "{name} yawned a {big} yawn.")
    s.say("{he} fell asleep on the way home and dreamed about the {sight}.",
          "that night, {he} dreamed about the {sight}.",
          "in bed that night, {name} thought about the {sight} and {smiled}.")
    s.end("it was the best trip ever.", "{name} hoped they could go back again soon.", p=0.5)


PROJECTS = (  # (goal, where, step 1, step 2, problem, fix, result, name of the thing)
    ("{name} wanted to bake a cake for {fname}'s birthday.", "in the kitchen",
     "{he} put flour, sugar and eggs in a big bowl.", "{he} stirred and stirred.",
     "the bowl slipped, and flour went all over the floor!",
     "{helper} helped {him} clean up, and they mixed it all again, slowly and carefully.",
     "the cake smelled sweet and yummy.", "cake"),
    ("{name} wanted to make a card for {fname}, who was sick in bed.", "at the table",
     "{he} folded a big piece of {color} paper.", "{he} drew a sun, a tree and a smiling face.",
     "{he} spilled {his} juice, and the card got all wet!",
     "{he} let it dry in the sun and drew a new picture on top.",
     "the card had lots of colors and a big heart.", "card"),
    ("{name} wanted to build a sand castle to show {fname}.", "at the beach",
     "{he} filled {his} bucket with wet sand and turned it over.",
     "{he} made four tall towers and a wall all around.",
     "a big wave came and washed the castle away!",
     "{he} built it again, this time far away from the water.",
     "it was the biggest castle on the beach.", "castle"),
    ("{name} wanted to make a snowman to surprise {fname}.", "in the yard",
     "{he} rolled a big snowball for the body.", "{he} rolled a smaller one for the head.",
     "the head fell off and broke into pieces!",
     "{helper} showed {him} how to pack the snow tight. This time it stayed.",
     "the snowman had a carrot nose and two black stones for eyes.", "snowman"),
    ("{name} wanted to make a flower necklace for {fname}.", "in the meadow",
     "{he} picked pink and yellow flowers.", "{he} tied the stems together one by one.",
     "the string broke, and the flowers fell in the grass!",
     "{helper} showed {him} how to make a stronger knot.",
     "the necklace was the prettiest thing {he} had ever made.", "necklace"),
    ("{name} wanted to build a little bird house for {fname}'s garden.", "in the backyard",
     "{he} took some small pieces of wood and some glue.", "{he} made four walls and a roof.",
     "the roof fell off!", "{helper} helped {him} hold the roof until the glue was dry.",
     "the bird house had a little round door for the birds.", "bird house"),
    ("{name} wanted to make a paper boat to sail with {fname}.", "by the pond",
     "{he} folded a piece of paper again and again.", "{he} drew a little flag on the side.",
     "the boat got wet and flopped over!",
     "{helper} showed {him} how to fold it tighter, and they made a new one.",
     "the boat floated on the water like a real ship.", "boat"),
    ("{name} wanted to paint a picture for {fname}.", "at the table",
     "{he} painted a {color} sky.", "{he} added a house, a dog and a tall tree.",
     "{he} bumped the water cup, and the colors ran together!",
     "{helper} said the colors looked like a sunset, so {name} painted a sunset on top.",
     "the picture was bright and {pretty}.", "picture"),
    ("{name} wanted to build a tall tower of blocks to show {fname}.", "in the living room",
     "{he} put the big blocks at the bottom.", "{he} put the small blocks on top, one by one.",
     "the tower wobbled and fell down with a crash!",
     "{helper} showed {him} how to make the bottom wide and strong.",
     "the tower was as tall as {name}.", "tower"),
    ("{name} wanted to make cookies for {fname}.", "in the kitchen",
     "{he} mixed butter, sugar and flour.", "{he} cut the dough into stars and hearts.",
     "{he} forgot to watch the oven, and the first cookies came out too dark!",
     "{helper} helped {him} make a new batch, and this time they set a timer.",
     "the cookies were golden and smelled wonderful.", "cookies"),
)


def _arc_make(s: _Story) -> None:
    """Making something: a goal, steps, a setback, trying again, a gift."""
    goal, where, step1, step2, problem, fix, result, thing = s.rng.choice(PROJECTS)
    s.ctx.update(thing=thing, where=where, it="them" if thing.endswith("s") else "it")
    s.set("problem", problem)
    s.set("result", result)
    _set_helper(s, 1.0)
    s.para()
    s.say(goal)
    s.say("{name} went {where} and got to work.", "{name} sat down {where} to begin.",
          "{he} got everything ready {where}.")
    s.say(step1)
    s.say(step2)
    s.maybe("{name} hummed a happy song while {he} worked.", "it was hard work, but fun.",
            "{he} was very careful.")
    s.say("but then {problem}", "oh no! {problem}", "{suddenly} {problem}")
    s.say("{name} felt {sad}.", "{name} felt like crying.", "{name} wanted to give up.",
          '"It is ruined!" cried {name}.')
    s.say('{helper} came over. "Don\'t give up," {hhe} said. "Let\'s try again."',
          '"Mistakes are okay," said {helper}. "We can fix it."',
          '{helper} gave {name} a hug. "We can make it even better," {hhe} said.')
    s.say(fix)
    s.say("at last, it was done. {result}", "when they were finished, {result}",
          "{name} stepped back and looked. {result}")
    s.para()
    s.say("{name} gave the {thing} to {fname}.", "{name} showed the {thing} to {fname}.",
          "{name} surprised {fname} with the {thing}.")
    s.say('{fname} loved {it}! "This is the best surprise ever!" {fhe} said.',
          '"Wow! Did you make this for me?" asked {fname}. {fhe} was {happy}.',
          '{fname} {smiled}. "{glad_word}, {name}! I love {it}!"')
    s.say("{name} felt {proud}.", "{name} {smiled} from ear to ear.")
    s.end("{name} learned that if you keep trying, you can do it.",
          "{name} learned that mistakes are okay if you try again.",
          "making something for a friend is the best gift of all.")


MISTAKES = (  # (the rule, breaking it, the damage, making it right)
    ('"Please do not play ball in the house," said {helper}.',
     "but when {helper} left the room, {name} threw {his} ball up high.",
     "crash! The ball hit {hhis} favorite vase, and it broke into pieces.",
     "together, they picked up the pieces and glued the vase back together."),
    ('"No cookies before dinner," said {helper}.',
     "but the cookies smelled so good. {name} climbed up on a chair to reach the jar.",
     "the jar slipped and fell to the floor. Crash!",
     "they swept up the pieces together, and {name} helped make dinner."),
    ('"Please drink your juice at the table," said {helper}.',
     "but {name} wanted to watch the birds by the window, so {he} took the cup with {him}.",
     "oops! {he} tripped, and the juice spilled all over the new white rug.",
     "they scrubbed the rug with soap and water until it was clean again."),
    ('"Please wipe your feet before you come in," said {helper}.',
     "but {name} was in a hurry and ran straight inside.",
     "muddy footprints went all across the clean kitchen floor.",
     "{name} got a mop and cleaned up every single footprint."),
    ('"Please paint only on the paper," said {helper}.',
     "but {name} wanted to make a bigger picture.",
     "{he} painted a {big} {color} sun right on the wall!",
     "they washed the wall together, and then {name} painted a big sun on paper instead."),
    ('"Please be gentle with the flowers," said {helper}.',
     "but {name} wanted to play catch in the garden.",
     "the ball landed on the flowers and squashed them flat.",
     "together, they planted new flowers, and {name} watered them every day."),
    ('"Please do not touch the fish bowl," said {helper}.',
     "but {name} wanted to give the fish a pat.",
     "{he} pushed too hard, and water splashed all over the table!",
     "they wiped up the water, and the little fish swam happily in its bowl."),
)


def _arc_mistake(s: _Story) -> None:
    """A mistake and an apology: a rule, breaking it, hiding, telling the truth, forgiveness."""
    rule, act, damage, fix = s.rng.choice(MISTAKES)
    s.ctx.update(hide=s.rng.choice(INDOOR_SPOTS))
    _set_helper(s, 1.0)
    s.para()
    s.say("{one_day}, {name} was at home with {his} {parent}.",
          "{one_day}, {name} was playing at home.", "it was a quiet day at home.")
    s.say(rule)
    s.say('"Okay," said {name}.', "{name} nodded.", '"I will," said {name}.')
    s.say(act)
    s.say(damage)
    s.para()
    s.say("{name} felt {scared}.", "{name}'s heart beat fast.", "{name} froze.")
    s.say("{he} ran and hid {hide}.", '"Maybe no one will know," {he} thought.',
          "{he} tiptoed away and hid {hide}.")
    s.say('when {helper} came back, {hhe} saw the mess. "What happened here?" {hhe} asked.',
          '{helper} walked in. "Oh my! Who did this?" {hhe} asked.',
          "soon {helper} came in and saw what had happened.")
    s.maybe("{name} did not want to get in trouble.", "{name} stayed very still.")
    s.say("but {name} knew that hiding was not right.", "but {name} did not feel good inside.",
          "but keeping the secret made {name}'s tummy hurt.")
    s.para()
    s.say('{name} came out and said, "I am sorry, {helper_call}. It was me. I did not listen."',
          '"It was me," {name} said {softly}. "I am sorry."',
          '{name} walked up to {helper}. "I did it," {he} said. "I am so sorry."')
    s.say("{helper} knelt down and gave {him} a hug.", "{helper} looked at {name} for a moment.",
          "{helper} sat down next to {name}.")
    s.say('"Thank you for telling me the truth," {hhe} said. "Everyone makes mistakes."',
          '"I am not mad," said {helper}. "I am glad you told me."',
          '"I am proud of you for telling me," said {helper}.')
    s.say(fix)
    s.end("{name} learned that telling the truth is always the right thing to do.",
          "from that day on, {name} always listened to {his} {parent}.",
          "{name} learned that saying sorry can make things better.")


def _arc_weather(s: _Story) -> None:
    """Weather: rain spoils a picnic (then a rainbow), a snow day, or the wind steals a hat."""
    s.para()
    s.rng.choice((_weather_rain, _weather_snow, _weather_wind))(s)


def _weather_rain(s: _Story) -> None:
    """Rain spoils a picnic; waiting it out is rewarded with a rainbow."""
    s.ctx["shelter"] = s.rng.choice(("a big tree", "the slide", "a little roof", "an old bridge",
                                     "a striped umbrella"))
    s.say("{one_day}, {name} and {fintro} went to have a picnic {in_place}.",
          "{one_day}, {name} and {fintro} packed a picnic and went {in_place}.")
    s.say("they brought {snack} and {snack}.", "{name} brought {snack}, and {fname} brought {snack}.")
    s.maybe("they sat on a {color} blanket and ate.", "the sun was warm, and the birds sang.")
    s.say("{suddenly} the sky turned dark.", "{suddenly} big gray clouds rolled in.",
          "{suddenly} a cold wind began to blow.")
    s.say('"Oh no! It is going to rain!" said {fname}.', "drip, drop. Big drops began to fall.",
          "plip, plop! The rain came down.")
    s.say("they grabbed their things and ran under {shelter}.",
          "they {ran} to hide under {shelter}.")
    s.say("{name} felt {sad}. The picnic was over.", "they waited and waited.",
          '"Our picnic is spoiled," said {name}.')
    s.maybe('then {fname} had an idea. "Let\'s count the raindrops!" {fhe} said.',
            "they listened to the rain go pitter-patter.")
    s.para()
    s.say("soon, the rain stopped, and the sun came out.", "after a while, the rain stopped.",
          "at last, the clouds moved away.")
    s.say('{name} looked up. "Look! A rainbow!" {he} shouted.',
          "there, over the {place}, was a {big} rainbow!",
          "a {pretty} rainbow stretched across the sky.")
    s.say("they jumped in the puddles and laughed.", "they finished their picnic in the sun.",
          "they splashed in the puddles until their boots were full of water.")
    s.end("{name} learned that even a rainy day can be fun.",
          "sometimes rain brings rainbows, and that is a good thing.")


def _weather_snow(s: _Story) -> None:
    """A snow day: play outside until cold, then warm cocoa inside."""
    s.say("{one_day}, {name} woke up and looked out the window.",
          "one cold morning, {name} jumped out of bed.", "one winter morning, {name} woke up early.")
    s.say("everything was white! Snow had fallen all night.", "it had snowed all night long!",
          "the whole world was covered in soft white snow.")
    s.say("{he} put on {his} warm coat, {his} {color} hat and {his} boots.",
          "{he} put on {his} mittens and {his} {color} scarf.")
    s.say("{he} ran outside to play with {fintro}.", "{fintro} was already outside.")
    s.say("they made snow angels and threw snowballs.",
          "they slid down the hill on a sled. Whee!", "they built a snow fort with thick walls.")
    s.maybe("{fname} made a snowball and threw it at {name}. Poof!",
            "the snow crunched under their boots.")
    s.para()
    s.say("after a while, {name}'s hands got cold, and {his} nose turned red.",
          "soon their toes were cold and their cheeks were pink.")
    s.say('"My fingers are so cold," {name} said.', "{name} began to shiver.")
    s.say("{his} {parent} called them inside.", '"Come in and get warm!" called {his} {parent}.')
    s.say("{parent_call} made hot cocoa with little marshmallows on top.",
          "{parent_call} gave them warm cups of cocoa.")
    s.say("they sat by the warm fire and drank it slowly.",
          "the cocoa was warm and sweet, and soon their fingers were warm again.")
    s.end("it was the best snow day ever.", "{name} could not wait for more snow.")


def _weather_wind(s: _Story) -> None:
    """The wind steals a hat; a chase with a funny landing."""
    s.ctx["catcher"] = s.rng.choice((
        "it landed right on the head of a surprised cow!",
        "it got caught on a branch, and a friendly dog jumped up and pulled it down.",
        "it landed in a puddle with a splash!",
        "it landed softly on top of a bush.",
        "it landed on a sleepy old goat, who just kept chewing."))
    s.say("{one_day}, the wind was blowing hard.", "it was a windy day.",
          "{one_day}, the trees were swaying in a strong wind.")
    s.say("{name} wore {his} {color} hat to the {place}.",
          "{name} put on {his} {color} hat and went to the {place}.")
    s.say("whoosh! The wind took the hat right off {his} head!",
          "{suddenly} a big gust of wind blew {his} hat away!")
    s.say('"Come back, hat!" {name} shouted.', "{name} {ran} after it.")
    s.say("the hat flew past {feature1} and over {feature2}.",
          "the hat went up, up, up, and then down, down, down.")
    s.maybe("{name} ran and ran, but the wind was faster.",
            "{he} almost caught it, but it flew away again.")
    s.say("at last, {catcher}")
    s.say("{name} laughed and laughed.", "{name} could not stop giggling.")
    s.say("{he} picked up {his} hat and held it tight.", "{fintro} saw it all and laughed too.")
    s.end("from then on, {name} held on to {his} hat on windy days.",
          "{name} learned that the wind likes to play too.")


CREATURES = (  # (creature, where found, its trouble, how it is helped, how it ends)
    ("a little puppy", "under a bench", "it was shaking, and no one was with it.",
     "the puppy had a tag on its collar. {name} and {his} {parent} walked it to the house "
     "on the tag.", "a girl opened the door and cried, \"You came back!\" She hugged the puppy."),
    ("a baby bird", "on the ground under a tree", "it had fallen out of its nest.",
     "{name} ran to get {his} {parent}, who got a ladder and put the bird back in its nest.",
     "the mother bird sang a happy song."),
    ("a slow little turtle", "in the middle of the path",
     "it was trying to get to the pond, but it was very slow.",
     "{name} carefully picked it up and carried it to the edge of the pond.",
     "the turtle slid into the water and swam away."),
    ("a green frog", "on a rock",
     '"Hello," said the frog. "I am lost. Can you help me find my pond?"',
     "{name} walked with the frog past the trees until they saw the pond.",
     '"Thank you!" said the frog, and it jumped into the water. Splash!'),
    ("a hungry squirrel", "on a branch", "it looked at {name}'s snack with big eyes.",
     "{name} broke off a piece of {his} snack and put it on the ground.",
     "the squirrel ran down, ate it, and came to visit {name} every day after that."),
    ("a butterfly", "in a puddle", "its wings were wet, and it could not fly.",
     "{name} gently lifted it onto a leaf and put it in the sun.",
     "soon its wings were dry, and it flew up into the sky."),
    ("a little kitten", "high up in a tree", "it was meowing because it could not get down.",
     "{name} ran to get {his} {parent}, who climbed a ladder and brought the kitten down.",
     "the kitten purred and rubbed against {name}'s legs."),
    ("a tiny duckling", "all alone by the path", "it had lost its mother.",
     "{name} followed the sound of quacking and led the duckling to the water.",
     "the duckling swam to its mother, and they paddled away together."),
    ("a little hedgehog", "stuck in an old fence", "it could not get out.",
     "{name} gently pulled the wire apart until there was room for it to wiggle free.",
     "the hedgehog sniffed {name}'s hand and shuffled off into the leaves."),
)


def _arc_animal(s: _Story) -> None:
    """An animal encounter: a small creature in trouble, kindness, a happy goodbye."""
    creature, where, trouble, help_, ending = s.rng.choice(CREATURES)
    s.ctx.update(creature=creature, cwhere=where)
    s.para()
    s.say("{one_day}, {name} was walking {in_place}.", "{one_day}, {name} went to play {in_place}.",
          "{one_day}, {name} {walked} off to the {place}.")
    s.say("{he} heard {sound}.", "{suddenly} {he} stopped.", "{he} heard {sound} nearby.")
    s.say("{he} looked and saw {creature} {cwhere}.", "there was {creature} {cwhere}!",
          "{he} bent down and saw {creature} {cwhere}.")
    s.say(trouble)
    s.say("{name} felt sorry for it.", '"Oh, you poor thing," said {name}.',
          "{name}'s heart felt heavy.")
    s.say('"Don\'t worry, little one. I will help you," {he} said {softly}.',
          "{name} wanted to help.", '"I will help you," {name} promised.')
    s.para()
    s.say(help_)
    s.say(ending)
    s.maybe("{name} waved goodbye.", "{name} watched with a big smile.")
    s.say("{name} felt warm inside.", "{name} was glad that {he} could help.",
          "{name} skipped all the way home.")
    s.end("{name} learned that even small animals need kindness.",
          "being kind to animals made {name} {very} happy.",
          "from that day on, {name} always looked out for little animals.")


def _arc_new_friend(s: _Story) -> None:
    """Making a new friend: moving or a new school, shyness, a brave hello, playing together."""
    inf, past = s.rng.choice(GAMES)
    s.ctx.update(game_inf=inf, game_past=past)
    s.set("fintro", "a {fadj} {fkind} named {fname}")   # not "her friend Tom": they just met
    s.para()
    s.say("{name} and {his} {parent} had just moved to a new house.",
          "it was {name}'s first week in a new town.",
          "{name} had just moved to a new street with {his} {parent}.")
    s.say("{name} did not know anyone. {he} felt lonely.",
          "{he} had no friends there yet, and {he} felt {sad}.",
          "{he} missed {his} old friends.")
    s.say("{one_day}, {he} went to the {place} and saw {fintro}.",
          "{one_day}, {name} {walked} to the {place}. There was {fintro}.")
    s.say("{fname} was playing with a {obj}.", "{fname} was all alone, too.",
          "{fname} was trying to {game_inf} all alone.")
    s.say("{name} wanted to say hello, but {he} was shy.",
          "{name} wanted to play, but {his} words got stuck.")
    s.maybe("{he} hid behind {his} {parent}.", "{he} looked down at {his} shoes.")
    s.say('{his} {parent} said, "Go on. Maybe {fhe} wants a friend too."',
          '"Just say hi," said {his} {parent}. "You can do it."')
    s.para()
    s.say("{name} took a small step, then another.", "{name} took a deep breath.",
          "{name} walked over slowly.")
    s.say('"Hi, I am {name}," {he} said. "Can I play with you?"',
          '"Hello," said {name}. "My name is {name}. What is your name?"')
    s.say('{fname} {smiled}. "I am {fname}! Do you want to {game_inf}?"',
          '"I am {fname}," said {fname} with a smile. "Let\'s {game_inf}!"')
    s.say("they {game_past} {whole_day}.", "they {game_past} and {had_fun}.")
    s.maybe("{fname} showed {name} the best places to play.", "they laughed at silly jokes.")
    s.say("{name} was not lonely anymore.", "{name} went home {happy}.")
    s.end("{name} learned that a new friend is just one hello away.",
          "from that day on, {name} and {fname} played together every day.")


PLANTS = (  # (what is planted, what it becomes)
    ("a tiny seed", "a tall yellow sunflower"), ("a bean", "a green bean plant as tall as {name}"),
    ("a little seed", "a plant with big red tomatoes"), ("a pumpkin seed", "a big orange pumpkin"),
    ("a flower seed", "a {pretty} pink flower"), ("a carrot seed", "a long orange carrot"),
    ("a strawberry plant", "a plant full of sweet red strawberries"),
    ("a round brown seed", "a little tree with {pretty} white blossoms"),
)


def _arc_plant(s: _Story) -> None:
    """Growing something: planting, impatience, a helper's advice, the reward of waiting."""
    seed, becomes = s.rng.choice(PLANTS)
    s.ctx["seed"] = seed
    s.set("becomes", becomes)
    _set_helper(s, 1.0)
    s.para()
    s.say("{one_day}, {his} {parent} gave {him} {seed}.",
          "{one_day}, {name} and {his} {parent} found {seed} in the garden shed.",
          "{one_day}, {name} got {seed} from {his} {parent}.")
    s.say('"If you plant it and take care of it, it will grow," said {his} {parent}.',
          '"Plant it, give it water, and see what happens," said {his} {parent}.',
          '"This will grow into something special," said {his} {parent}.')
    s.say("{name} dug a {little} hole and put it inside.",
          "{name} made a hole in the soft dirt and dropped it in.",
          "{name} found a sunny spot by the fence and planted it there.",
          "{name} put it in a {color} pot full of dirt.")
    s.say("{he} covered it with dirt and gave it some water.",
          "{he} patted the dirt down and gave it a drink from {his} {little} can.",
          "then {he} gave it a little water, just like {his} {parent} showed {him}.")
    s.para()
    s.say("the next day, {name} ran outside to look. Nothing!",
          "the next morning, {name} looked, but there was only dirt.")
    s.say("{he} watered it every day, but still nothing happened.",
          "days went by, and still there was nothing to see.",
          "{name} checked on it every morning and every night. Still nothing.")
    s.say('"Why is it not growing?" {he} asked.', "{name} felt {sad}.",
          '"Maybe it will never grow," {name} said.')
    s.say('"Be patient," said {helper}. "Good things take time."',
          '"Plants grow slowly," said {helper}. "Keep taking care of it."')
    s.maybe("so {name} waited and waited.", "{name} sang to it every morning, just in case.")
    s.para()
    s.say("then, one morning, {he} saw a tiny green sprout!",
          "one morning, {name} saw something green poking out of the dirt!",
          '{one_day}, {name} shouted, "{parent_call}, come and look! It is growing!"')
    s.say("the sprout grew bigger and bigger.", "every day it grew a little taller.",
          "it grew and grew in the warm sun.")
    s.say("at last, it became {becomes}.", "in the end, there was {becomes}.")
    s.say("{name} felt {proud}.", '"I grew it myself!" {name} said.')
    s.end("{name} learned that good things take time.",
          "being patient was hard, but it was worth it.")


def _arc_race(s: _Story) -> None:
    """A race: wanting to win, a friend falls, stopping to help, finishing together."""
    s.ctx["goal"] = s.rng.choice(("the big tree", "the red fence", "the old bench",
                                  "the top of the hill", "the gate", "the big rock"))
    s.para()
    s.say("{one_day}, {name} and {fintro} were playing {in_place}.",
          "{one_day}, {name} met {fintro} {in_place}.")
    s.say('"Let\'s have a race to {goal}!" said {fname}.',
          '"I bet I can beat you to {goal}!" said {name}.',
          '"Race you to {goal}!" {fname} called.')
    s.say('"Ready, set, go!" they shouted.', "{fname} counted, \"One, two, three, go!\"")
    s.say("they ran as fast as they could.", "off they went!", "they {ran} across the grass.")
    s.say("{name} was in front.", "{name} was winning.", "{name} was a little faster.")
    s.say("{suddenly} {he} heard a cry behind {him}.", "then {name} heard a thump and an \"Ouch!\"")
    s.say("{fname} had tripped over a rock and fallen down.",
          "{fname} had slipped on the wet grass.",
          "{fname} was sitting on the ground, holding {fhis} knee.")
    s.para()
    s.say("{name} could still win the race. But {he} stopped.",
          "{name} wanted to win, but {he} turned around.",
          "{name} looked at {goal}. Then {he} looked back at {fname}.")
    s.say("{he} ran back to {fname}.", "{he} hurried back.")
    s.say('"Are you okay?" {he} asked.', '"Does it hurt?" asked {name}.')
    s.say('"My knee hurts," said {fname}.', '"I scraped my hand," said {fname} {softly}.')
    s.say("{name} helped {fhim} up.", "{name} gave {fhim} a hand.")
    s.say("they walked to {goal} together, side by side.",
          "together, they walked the rest of the way.",
          "they held hands and walked slowly to {goal}.")
    s.say('"We both won!" said {name}, and they laughed.',
          '"Let\'s call it a tie," said {fname}, and they both {smiled}.')
    s.end("{name} learned that being a good friend is better than winning.",
          "from that day on, {name} and {fname} always ran together.")


ARCS = (_arc_lost, _arc_share, _arc_fear, _arc_help, _arc_trip, _arc_make, _arc_mistake,
        _arc_weather, _arc_animal, _arc_new_friend, _arc_plant, _arc_race)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------

def _fit_length(s: _Story) -> None:
    """Drop optional sentences while too long; add hero/setting sentences while too short."""
    total = s.n_tokens()
    while total > MAX_TOKENS:
        optional = [(p, i) for p, para in enumerate(s.paras) for i, (_, o) in enumerate(para) if o]
        if not optional:
            return
        p, i = s.rng.choice(optional)
        total -= len(s.paras[p].pop(i)[0].split())
    if total >= MIN_TOKENS:
        return
    fillers = list(FILLERS)
    s.rng.shuffle(fillers)
    present = {t for para in s.paras for t, _ in para}
    while total < MIN_TOKENS and fillers:
        text = s.render(fillers.pop())
        if text not in present:
            s.paras[0].insert(s.intro_end, (text, True))
            total += len(text.split())


def generate_story(rng: random.Random) -> str:
    """One story drawn from `rng`; retries (deterministically) in the rare case it won't fit."""
    for _ in range(50):
        s = _Story(rng, _context(rng))
        _opening(s)
        s.intro_end = len(s.paras[0])
        rng.choice(ARCS)(s)
        _fit_length(s)
        if MIN_TOKENS <= s.n_tokens() <= MAX_TOKENS:
            return s.text()
    raise RuntimeError("could not generate a story of the required length")


def generate_stories(n: int, seed: int) -> list[str]:
    """n stories, deterministic per seed (same seed -> identical list; story i must depend only
    on (seed, i), so generate_stories(10, s)[:5] == generate_stories(5, s)).

    Each story gets its own random.Random seeded with the string f"{seed}:{i}"; string seeds are
    hashed with SHA-512 by `random`, so this is stable across runs and Python processes.
    """
    return [generate_story(random.Random(f"{seed}:{i}")) for i in range(n)]


def distinct_ngram_share(texts: list[str], n: int = 8) -> float:
    """Share of whitespace-token n-grams (over all texts) that are distinct: len(set)/total.

    n-grams never cross text boundaries. A low value means the corpus is repetitive (a model
    could memorise it); returns 0.0 if no text has n tokens.
    """
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = text.split()
        grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0
