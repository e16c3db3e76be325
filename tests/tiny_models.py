"""Tiny random multilingual causal LMs, built offline, for fast tests.

Nothing here touches the network: the tokenizer is a byte-level BPE trained
with the ``tokenizers`` library on the small multilingual corpus below, and
every model is a randomly initialised Hugging Face causal LM with tiny
dimensions.  ``make_tiny_model(arch, out_dir)`` saves model + tokenizer into
``out_dir`` so that ``TransformerBridge.boot_transformers(out_dir)`` (and the
library's own loader) can boot it with ``HF_HUB_OFFLINE=1``.

Architectures (``TINY_ARCHS``) cover both MLP families used in the papers:

* non-gated (``hook_post = act_fn(hook_pre)``): ``gpt2``, ``bloom``, ``xglm``
* gated (``hook_post = act_fn(hook_pre) * hook_pre_linear``): ``llama``,
  ``mistral``, ``qwen2``, ``gemma3`` (text-only ``Gemma3ForCausalLM``),
  ``cohere`` (Aya / Command-R).

The saved tokenizer mirrors the real model families' BOS policy
(``TOKENIZER_ADDS_BOS``): the Llama-, Mistral-, Gemma-, Cohere- and
XGLM-style tokenizers prepend BOS on ``encode``; GPT-2, BLOOM and Qwen2 do not.
Note that TransformerLens reloads the tokenizer with ``add_bos_token=True``, so
``bridge.tokenizer`` may prepend BOS where ``AutoTokenizer.from_pretrained``
does not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

__all__ = [
    "TINY_ARCHS",
    "GATED_ARCHS",
    "NON_GATED_ARCHS",
    "TOKENIZER_ADDS_BOS",
    "SPECIAL_TOKENS",
    "VOCAB_SIZE",
    "CORPUS",
    "SENTENCES",
    "TL_CFG_ACT_FN",
    "MLP_ACT_FN",
    "arch_of",
    "build_tokenizer",
    "make_tiny_model",
    "load_tiny_bridge",
]

NON_GATED_ARCHS: tuple[str, ...] = ("gpt2", "bloom", "xglm")
GATED_ARCHS: tuple[str, ...] = ("llama", "mistral", "qwen2", "gemma3", "cohere")
TINY_ARCHS: tuple[str, ...] = NON_GATED_ARCHS + GATED_ARCHS

#: Whether the tokenizer saved with each tiny model prepends BOS on encode
#: (mirrors the real families' tokenizers).
TOKENIZER_ADDS_BOS: dict[str, bool] = {
    "gpt2": False,
    "bloom": False,
    "xglm": True,
    "llama": True,
    "mistral": True,
    "qwen2": False,
    "gemma3": True,
    "cohere": True,
}

#: ``bridge.cfg.act_fn`` as TransformerLens 4.3 reports it for each tiny arch.
TL_CFG_ACT_FN: dict[str, str] = {
    "gpt2": "gelu_new",
    "bloom": "relu",  # wrong: BloomConfig has no activation field, TL keeps its default
    "xglm": "gelu",
    "llama": "silu",
    "mistral": "silu",
    "qwen2": "silu",
    "gemma3": "gelu_pytorch_tanh",
    "cohere": "silu",
}

#: ``transformers.activations.ACT2FN`` key of the activation each MLP really applies.
#: Same as ``TL_CFG_ACT_FN`` except BLOOM, whose ``bloom_gelu_forward`` is the tanh
#: GELU (equal to ``gelu_new`` / ``gelu_pytorch_tanh`` to ~1e-7).
MLP_ACT_FN: dict[str, str] = {**TL_CFG_ACT_FN, "bloom": "gelu_pytorch_tanh"}

SPECIAL_TOKENS: dict[str, str] = {
    "pad_token": "<pad>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
}
# Ids follow the order of the trainer's special-token list.
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
VOCAB_SIZE = 512

# --------------------------------------------------------------------------
# Multilingual corpus (a few dozen hand-written sentences per language, plus
# deterministic template sentences).
# --------------------------------------------------------------------------

SENTENCES: dict[str, list[str]] = {
    "en": [
        "The cat is sleeping on the warm windowsill.",
        "My brother works in a small bakery near the station.",
        "It rained all day, so we stayed at home and read books.",
        "Could you please tell me the way to the museum?",
        "The children are playing football in the park.",
        "She drinks a cup of coffee every morning before work.",
        "We are going to visit our grandparents next weekend.",
        "This restaurant serves the best soup in the city.",
        "The train to London leaves at half past seven.",
        "I forgot my umbrella on the bus yesterday.",
        "Learning a new language takes time and patience.",
        "The river flows slowly through the old town.",
        "He bought fresh bread, cheese and apples at the market.",
        "Our teacher explained the problem very clearly.",
        "The sun sets behind the mountains in the evening.",
        "Please close the door when you leave the room.",
        "They have lived in this house for twenty years.",
        "The library opens at nine o'clock on Saturdays.",
        "My favourite season is autumn because of the colours.",
        "The doctor said that I should sleep more.",
        "A small dog was barking at the postman.",
        "We watched a funny film at the cinema last night.",
        "The museum has a large collection of old paintings.",
        "Can I pay with a credit card here?",
        "The garden is full of roses and tulips in spring.",
        "I would like a ticket to the airport, please.",
        "The weather will be sunny and warm tomorrow.",
        "Her sister plays the piano beautifully.",
        "The students are preparing for their final exams.",
        "Everyone was happy when the holidays finally began.",
    ],
    "de": [
        "Die Katze schläft auf der warmen Fensterbank.",
        "Mein Bruder arbeitet in einer kleinen Bäckerei am Bahnhof.",
        "Es hat den ganzen Tag geregnet, also blieben wir zu Hause.",
        "Können Sie mir bitte den Weg zum Museum zeigen?",
        "Die Kinder spielen Fußball im Park.",
        "Sie trinkt jeden Morgen vor der Arbeit eine Tasse Kaffee.",
        "Nächstes Wochenende besuchen wir unsere Großeltern.",
        "Dieses Restaurant serviert die beste Suppe der Stadt.",
        "Der Zug nach Berlin fährt um halb acht ab.",
        "Ich habe gestern meinen Regenschirm im Bus vergessen.",
        "Eine neue Sprache zu lernen braucht Zeit und Geduld.",
        "Der Fluss fließt langsam durch die Altstadt.",
        "Er kaufte frisches Brot, Käse und Äpfel auf dem Markt.",
        "Unser Lehrer hat die Aufgabe sehr deutlich erklärt.",
        "Am Abend geht die Sonne hinter den Bergen unter.",
        "Bitte schließen Sie die Tür, wenn Sie den Raum verlassen.",
        "Sie wohnen seit zwanzig Jahren in diesem Haus.",
        "Die Bibliothek öffnet samstags um neun Uhr.",
        "Meine Lieblingsjahreszeit ist der Herbst wegen der Farben.",
        "Der Arzt sagte, dass ich mehr schlafen sollte.",
        "Ein kleiner Hund bellte den Briefträger an.",
        "Gestern Abend haben wir im Kino einen lustigen Film gesehen.",
        "Das Museum hat eine große Sammlung alter Gemälde.",
        "Kann ich hier mit Kreditkarte bezahlen?",
        "Im Frühling ist der Garten voller Rosen und Tulpen.",
        "Ich hätte gern eine Fahrkarte zum Flughafen, bitte.",
        "Morgen wird das Wetter sonnig und warm.",
        "Ihre Schwester spielt wunderschön Klavier.",
        "Die Studenten bereiten sich auf ihre Prüfungen vor.",
        "Alle waren glücklich, als die Ferien endlich begannen.",
    ],
    "fr": [
        "Le chat dort sur le rebord chaud de la fenêtre.",
        "Mon frère travaille dans une petite boulangerie près de la gare.",
        "Il a plu toute la journée, alors nous sommes restés à la maison.",
        "Pourriez-vous m'indiquer le chemin du musée, s'il vous plaît ?",
        "Les enfants jouent au football dans le parc.",
        "Elle boit une tasse de café chaque matin avant le travail.",
        "Nous allons rendre visite à nos grands-parents le week-end prochain.",
        "Ce restaurant sert la meilleure soupe de la ville.",
        "Le train pour Paris part à sept heures et demie.",
        "J'ai oublié mon parapluie dans le bus hier.",
        "Apprendre une nouvelle langue demande du temps et de la patience.",
        "La rivière coule lentement à travers la vieille ville.",
        "Il a acheté du pain frais, du fromage et des pommes au marché.",
        "Notre professeur a expliqué le problème très clairement.",
        "Le soleil se couche derrière les montagnes le soir.",
        "Fermez la porte quand vous quittez la pièce, s'il vous plaît.",
        "Ils habitent dans cette maison depuis vingt ans.",
        "La bibliothèque ouvre à neuf heures le samedi.",
        "Ma saison préférée est l'automne à cause des couleurs.",
        "Le médecin a dit que je devrais dormir davantage.",
        "Un petit chien aboyait après le facteur.",
        "Hier soir, nous avons vu un film drôle au cinéma.",
        "Le musée possède une grande collection de tableaux anciens.",
        "Est-ce que je peux payer par carte bancaire ici ?",
        "Au printemps, le jardin est plein de roses et de tulipes.",
        "Je voudrais un billet pour l'aéroport, s'il vous plaît.",
        "Demain, le temps sera ensoleillé et chaud.",
        "Sa sœur joue magnifiquement du piano.",
        "Les étudiants préparent leurs examens de fin d'année.",
        "Tout le monde était content quand les vacances ont enfin commencé.",
    ],
    "es": [
        "El gato duerme en el alféizar cálido de la ventana.",
        "Mi hermano trabaja en una pequeña panadería cerca de la estación.",
        "Llovió todo el día, así que nos quedamos en casa leyendo.",
        "¿Podría decirme cómo llegar al museo, por favor?",
        "Los niños juegan al fútbol en el parque.",
        "Ella bebe una taza de café cada mañana antes del trabajo.",
        "Vamos a visitar a nuestros abuelos el próximo fin de semana.",
        "Este restaurante sirve la mejor sopa de la ciudad.",
        "El tren a Madrid sale a las siete y media.",
        "Ayer olvidé mi paraguas en el autobús.",
        "Aprender un idioma nuevo requiere tiempo y paciencia.",
        "El río fluye lentamente por el casco antiguo.",
        "Compró pan fresco, queso y manzanas en el mercado.",
        "Nuestro profesor explicó el problema con mucha claridad.",
        "Por la tarde el sol se pone detrás de las montañas.",
        "Por favor, cierre la puerta cuando salga de la habitación.",
        "Viven en esta casa desde hace veinte años.",
        "La biblioteca abre a las nueve los sábados.",
        "Mi estación favorita es el otoño por sus colores.",
        "El médico dijo que debería dormir más.",
        "Un perro pequeño le ladraba al cartero.",
        "Anoche vimos una película divertida en el cine.",
        "El museo tiene una gran colección de pinturas antiguas.",
        "¿Puedo pagar con tarjeta de crédito aquí?",
        "En primavera el jardín está lleno de rosas y tulipanes.",
        "Quisiera un billete para el aeropuerto, por favor.",
        "Mañana hará sol y calor.",
        "Su hermana toca el piano maravillosamente.",
        "Los estudiantes se preparan para los exámenes finales.",
        "Todos estaban felices cuando por fin empezaron las vacaciones.",
    ],
    "zh": [
        "猫在温暖的窗台上睡觉。",
        "我哥哥在车站附近的一家小面包店工作。",
        "下了一整天的雨，所以我们待在家里看书。",
        "请问去博物馆怎么走？",
        "孩子们在公园里踢足球。",
        "她每天早上上班前喝一杯咖啡。",
        "我们下个周末要去看望爷爷奶奶。",
        "这家餐厅的汤是全城最好的。",
        "去北京的火车七点半出发。",
        "我昨天把雨伞忘在公共汽车上了。",
        "学习一门新语言需要时间和耐心。",
        "河水慢慢地流过老城。",
        "他在市场上买了新鲜的面包、奶酪和苹果。",
        "我们的老师把问题讲得非常清楚。",
        "傍晚太阳落到山后面去了。",
        "离开房间的时候请关上门。",
        "他们在这所房子里住了二十年。",
        "图书馆星期六九点开门。",
        "我最喜欢的季节是秋天，因为颜色很美。",
        "医生说我应该多睡一会儿。",
        "一只小狗在对着邮递员叫。",
        "昨天晚上我们在电影院看了一部有趣的电影。",
        "这个博物馆收藏了很多古代绘画。",
        "这里可以用信用卡付款吗？",
        "春天的花园里开满了玫瑰和郁金香。",
        "我想买一张去机场的票。",
        "明天天气晴朗而且暖和。",
        "她的妹妹钢琴弹得很好。",
        "学生们正在准备期末考试。",
        "假期终于开始了，大家都很高兴。",
    ],
    "ja": [
        "猫が暖かい窓辺で眠っています。",
        "兄は駅の近くの小さなパン屋で働いています。",
        "一日中雨が降ったので、家で本を読みました。",
        "博物館への行き方を教えていただけますか。",
        "子どもたちは公園でサッカーをしています。",
        "彼女は毎朝仕事の前にコーヒーを一杯飲みます。",
        "来週の週末に祖父母を訪ねる予定です。",
        "このレストランのスープは町で一番おいしいです。",
        "東京行きの電車は七時半に出発します。",
        "昨日バスに傘を忘れてしまいました。",
        "新しい言語を学ぶには時間と忍耐が必要です。",
        "川は古い町の中をゆっくりと流れています。",
        "彼は市場で新しいパンとチーズとりんごを買いました。",
        "先生は問題をとても分かりやすく説明してくれました。",
        "夕方になると太陽が山の向こうに沈みます。",
        "部屋を出るときはドアを閉めてください。",
        "彼らはこの家に二十年住んでいます。",
        "図書館は土曜日の九時に開きます。",
        "色がきれいなので、秋が一番好きな季節です。",
        "医者はもっと寝たほうがいいと言いました。",
        "小さな犬が郵便配達の人に吠えていました。",
        "昨夜、映画館で面白い映画を見ました。",
        "その博物館には古い絵がたくさんあります。",
        "ここでクレジットカードは使えますか。",
        "春になると庭はバラとチューリップでいっぱいになります。",
        "空港までの切符を一枚お願いします。",
        "明日は晴れて暖かくなるでしょう。",
        "彼女の妹はピアノがとても上手です。",
        "学生たちは期末試験の準備をしています。",
        "やっと休みが始まって、みんな喜んでいました。",
    ],
}

_TEMPLATES: dict[str, tuple[list[str], list[str], list[str]]] = {
    "en": (
        ["The teacher", "My friend", "A young woman", "The old man", "Our neighbour"],
        ["reads", "writes", "finds", "likes", "sells"],
        ["a long letter.", "the newspaper.", "an old book.", "a red bicycle.", "the blue house."],
    ),
    "de": (
        ["Der Lehrer", "Mein Freund", "Eine junge Frau", "Der alte Mann", "Unser Nachbar"],
        ["liest", "schreibt", "findet", "mag", "verkauft"],
        ["einen langen Brief.", "die Zeitung.", "ein altes Buch.", "ein rotes Fahrrad.", "das blaue Haus."],
    ),
    "fr": (
        ["Le professeur", "Mon ami", "Une jeune femme", "Le vieil homme", "Notre voisin"],
        ["lit", "écrit", "trouve", "aime", "vend"],
        ["une longue lettre.", "le journal.", "un vieux livre.", "un vélo rouge.", "la maison bleue."],
    ),
    "es": (
        ["El profesor", "Mi amigo", "Una mujer joven", "El anciano", "Nuestro vecino"],
        ["lee", "escribe", "encuentra", "quiere", "vende"],
        ["una carta larga.", "el periódico.", "un libro viejo.", "una bicicleta roja.", "la casa azul."],
    ),
    "zh": (
        ["老师", "我的朋友", "一位年轻的女士", "那位老人", "我们的邻居"],
        ["在读", "在写", "找到了", "喜欢", "在卖"],
        ["一封长信。", "报纸。", "一本旧书。", "一辆红色的自行车。", "那座蓝色的房子。"],
    ),
    "ja": (
        ["先生は", "私の友達は", "若い女性は", "そのお年寄りは", "隣の人は"],
        ["長い手紙を", "新聞を", "古い本を", "赤い自転車を", "青い家を"],
        ["読みます。", "書きます。", "見つけました。", "気に入っています。", "売っています。"],
    ),
}


def _template_sentences(lang: str, n: int = 40) -> list[str]:
    a, b, c = _TEMPLATES[lang]
    out = []
    for i in range(n):
        x, y, z = a[i % 5], b[(i // 5) % 5], c[(i * 3 + i // 25) % 5]
        sep = "" if lang in ("zh", "ja") else " "
        out.append(sep.join((x, y, z)))
    return out


#: Every training line of the tokenizer: hand-written + template sentences.
CORPUS: list[str] = [s for lang in SENTENCES for s in SENTENCES[lang] + _template_sentences(lang)]

# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------

_TOKENIZER_CACHE: dict[str, Any] = {}


def _train_backend_tokenizer():
    """Train (once per process) a byte-level BPE on CORPUS; returns a ``tokenizers.Tokenizer``."""
    if "backend" in _TOKENIZER_CACHE:
        return _TOKENIZER_CACHE["backend"]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = [SPECIAL_TOKENS[k] for k in ("pad_token", "bos_token", "eos_token", "unk_token")]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 2, trainer=trainer)
    for i, s in enumerate(specials):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    _TOKENIZER_CACHE["backend"] = tok
    return tok


def build_tokenizer(dir: str | os.PathLike | None = None, add_bos: bool = False):
    """Build the tiny byte-level BPE tokenizer (vocab 512) and save it to ``dir``.

    The BPE is trained once per process and cached.  Returns a
    ``transformers.PreTrainedTokenizerFast`` with ``bos_token="<s>"`` (id 1),
    ``eos_token="</s>"`` (id 2), ``pad_token="<pad>"`` (id 0),
    ``unk_token="<unk>"`` (id 3), right padding.  ``add_bos=True`` makes
    ``encode`` / ``__call__`` prepend BOS (Llama/Gemma style).  It encodes any
    Unicode text (byte-level, no unknown tokens).  When ``dir`` is given, the
    tokenizer is saved there with ``save_pretrained`` and reloaded from it, so its
    ``name_or_path`` is that folder.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(_train_backend_tokenizer().to_str())
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        add_bos_token=add_bos,
        add_eos_token=False,
        padding_side="right",
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
        **SPECIAL_TOKENS,
    )
    if dir is not None:
        dir = Path(dir)
        dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(dir)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(dir)
    return tokenizer


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

D_MODEL = 64
D_MLP = 128
N_LAYERS = 2
N_HEADS = 4
N_KV_HEADS = 2
MAX_POS = 512
INIT_RANGE = 0.1  # larger than HF's 0.02 so activations are clearly non-zero


def _config(arch: str):
    import transformers as tf

    ids = dict(pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID)
    common_gated = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=D_MODEL,
        intermediate_size=D_MLP,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        num_key_value_heads=N_KV_HEADS,
        max_position_embeddings=MAX_POS,
        initializer_range=INIT_RANGE,
        tie_word_embeddings=False,
        **ids,
    )
    if arch == "gpt2":
        return tf.GPT2Config(
            vocab_size=VOCAB_SIZE,
            n_positions=MAX_POS,
            n_embd=D_MODEL,
            n_layer=N_LAYERS,
            n_head=N_HEADS,
            n_inner=D_MLP,
            activation_function="gelu_new",
            initializer_range=INIT_RANGE,
            **ids,
        )
    if arch == "bloom":
        # BLOOM's MLP width is fixed at 4 * hidden_size; ALiBi, no position table.
        return tf.BloomConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=D_MLP // 4,
            n_layer=N_LAYERS,
            n_head=N_HEADS,
            initializer_range=INIT_RANGE,
            **ids,
        )
    if arch == "xglm":
        # TL 4.3 reads XGLM's d_mlp as 4 * d_model (it ignores ffn_dim), so keep
        # ffn_dim == 4 * d_model.
        return tf.XGLMConfig(
            vocab_size=VOCAB_SIZE,
            max_position_embeddings=MAX_POS,
            d_model=D_MLP // 4,
            ffn_dim=D_MLP,
            num_layers=N_LAYERS,
            attention_heads=N_HEADS,
            activation_function="gelu",
            init_std=INIT_RANGE,
            decoder_start_token_id=EOS_ID,
            **ids,
        )
    if arch == "llama":
        return tf.LlamaConfig(**common_gated)
    if arch == "mistral":
        return tf.MistralConfig(sliding_window=None, **common_gated)
    if arch == "qwen2":
        return tf.Qwen2Config(use_sliding_window=False, **common_gated)
    if arch == "gemma3":
        return tf.Gemma3TextConfig(
            head_dim=16,
            query_pre_attn_scalar=16,
            sliding_window=16,
            layer_types=["sliding_attention", "full_attention"],
            hidden_activation="gelu_pytorch_tanh",
            **common_gated,
        )
    if arch == "cohere":
        cfg = dict(common_gated)
        cfg["tie_word_embeddings"] = True
        return tf.CohereConfig(logit_scale=0.0625, **cfg)
    raise ValueError(f"unknown tiny arch {arch!r}; choose from {TINY_ARCHS}")


def _model_class(arch: str):
    import transformers as tf

    return {
        "gpt2": tf.GPT2LMHeadModel,
        "bloom": tf.BloomForCausalLM,
        "xglm": tf.XGLMForCausalLM,
        "llama": tf.LlamaForCausalLM,
        "mistral": tf.MistralForCausalLM,
        "qwen2": tf.Qwen2ForCausalLM,
        "gemma3": tf.Gemma3ForCausalLM,
        "cohere": tf.CohereForCausalLM,
    }[arch]


def make_tiny_model(arch: str, out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Build a random tiny ``arch`` causal LM (float32) and save it with its tokenizer.

    Dims: 2 layers, d_model 64 (BLOOM, XGLM: 32, as their d_mlp is 4 * d_model),
    d_mlp 128, 4 heads (2 KV heads for the gated families), vocab 512, 512 positions
    (BLOOM: ALiBi, no limit), weights drawn with std 0.1.  Gemma-3 alternates a
    sliding-window layer (window 16) with a global one.  ``torch.manual_seed(seed)`` makes
    the weights deterministic.  Returns ``Path(out_dir)``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = _config(arch)
    config.architectures = [_model_class(arch).__name__]
    torch.manual_seed(seed)
    model = _model_class(arch)(config).to(torch.float32).eval()
    model.generation_config.pad_token_id = PAD_ID
    model.generation_config.bos_token_id = BOS_ID
    model.generation_config.eos_token_id = EOS_ID
    model.save_pretrained(out_dir)
    build_tokenizer(out_dir, add_bos=TOKENIZER_ADDS_BOS[arch])
    return out_dir


def arch_of(path: str | os.PathLike) -> str:
    """The ``TINY_ARCHS`` name of a folder written by ``make_tiny_model``."""
    import json

    model_type = json.loads((Path(path) / "config.json").read_text())["model_type"]
    return {"gemma3_text": "gemma3"}.get(model_type, model_type)


def load_tiny_bridge(path: str | os.PathLike, *, compatibility_mode: bool = True):
    """Boot a TransformerLens 4 ``TransformerBridge`` from a tiny-model folder (cpu, float32)."""
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(str(path), device="cpu", dtype=torch.float32)
    if compatibility_mode:
        bridge.enable_compatibility_mode()
    return bridge
