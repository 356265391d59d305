"""Dataset presets: classes, image size, class names and the mean/std each dataset is normalised
with.

Facts from ``docs/upstream-formats.md`` and the public subset definitions of the MTT code
base (ImageNet class ids of each 10-class subset). What a distillation method did differently (GLaD's
default mean, RDED's ImageNet statistics for every dataset) is the method's converter's
``normalization`` hook (:meth:`ladd_format.converters.Converter.normalization`), not a preset's.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)        # MTT uses CIFAR-10's numbers for CIFAR-100 too
CIFAR_STD = (0.2023, 0.1994, 0.2010)
# DatasetCondensation's get_dataset (DC/DSA/DM and the code bases that reuse it): 28x28 grey MNIST and
# FashionMNIST, 32x32 SVHN, each with its own statistics
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHIONMNIST_MEAN, FASHIONMNIST_STD = (0.2861,), (0.3530,)
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)
DIGIT_NAMES = tuple(str(c) for c in range(10))
FASHIONMNIST_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot")

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_NAMES = tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion
lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear
pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark
shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone
television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split())


@dataclass(frozen=True)
class Preset:
    name: str
    num_classes: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] | None = None
    imagenet_ids: tuple[int, ...] | None = None   # saved label i means ImageNet class imagenet_ids[i]
    family: str = "imagenet-subset"                # cifar | small | tinyimagenet | imagenet | imagenet-subset


def _subset(name, ids, names):
    return Preset(name, 10, 128, IMAGENET_MEAN, IMAGENET_STD, tuple(names), tuple(ids))


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("cifar10", 10, 32, CIFAR_MEAN, CIFAR_STD, CIFAR10_NAMES, family="cifar"),
    Preset("cifar100", 100, 32, CIFAR_MEAN, CIFAR_STD, CIFAR100_NAMES, family="cifar"),
    Preset("mnist", 10, 28, MNIST_MEAN, MNIST_STD, DIGIT_NAMES, family="small"),
    Preset("fashionmnist", 10, 28, FASHIONMNIST_MEAN, FASHIONMNIST_STD, FASHIONMNIST_NAMES, family="small"),
    Preset("svhn", 10, 32, SVHN_MEAN, SVHN_STD, DIGIT_NAMES, family="small"),
    Preset("tinyimagenet", 200, 64, IMAGENET_MEAN, IMAGENET_STD, family="tinyimagenet"),
    Preset("imagenet", 1000, 224, IMAGENET_MEAN, IMAGENET_STD, family="imagenet"),
    _subset("imagenette", [0, 217, 482, 491, 497, 566, 569, 571, 574, 701],
            ["tench", "English springer", "cassette player", "chain saw", "church", "French horn",
             "garbage truck", "gas pump", "golf ball", "parachute"]),
    _subset("imagewoof", [193, 182, 258, 162, 155, 167, 159, 273, 207, 229],
            ["Australian terrier", "Border terrier", "Samoyed", "beagle", "Shih-Tzu", "English foxhound",
             "Rhodesian ridgeback", "dingo", "golden retriever", "Old English sheepdog"]),
    _subset("imagemeow", [281, 282, 283, 284, 285, 291, 292, 290, 289, 287],
            ["tabby cat", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat", "lion", "tiger", "jaguar",
             "snow leopard", "lynx"]),
    _subset("imagesquawk", [84, 130, 88, 144, 145, 22, 96, 9, 100, 89],
            ["peacock", "flamingo", "macaw", "pelican", "king penguin", "bald eagle", "toucan", "ostrich",
             "black swan", "cockatoo"]),
    _subset("imagefruit", [953, 954, 949, 950, 951, 957, 952, 945, 943, 948],
            ["pineapple", "banana", "strawberry", "orange", "lemon", "pomegranate", "fig", "bell pepper",
             "cucumber", "Granny Smith"]),
    _subset("imageyellow", [309, 986, 954, 951, 987, 779, 599, 291, 72, 11],
            ["bee", "yellow lady's slipper", "banana", "lemon", "corn", "school bus", "honeycomb", "lion",
             "garden spider", "goldfinch"]),
)}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise InputError(f"unknown dataset preset {name!r}; known: {', '.join(preset_names())}") from None
