"""torch.utils.data, written once against a torch-like namespace (the engine module or a client
Session): `Dataset`, `TensorDataset`, `Subset`, the samplers, `default_collate`, `DataLoader`
and `random_split`, with torch's defaults, call order and error texts.

The classes that draw random numbers or make tensors (`RandomSampler`, `DataLoader`) and the
functions (`default_collate`, `random_split`) need the namespace: `namespace(torch)` returns a
`torch.utils.data`-like object whose members are bound to it. Random draws are made as torch
makes them, so their order follows the namespace's generator: each pass over a DataLoader draws
its base seed (`torch.empty((), dtype=torch.int64).random_()`), and a shuffling sampler then draws
its own seed the same way, seeds a new `torch.Generator` with it and takes `torch.randperm`s from
that generator. Loading always runs in the calling process: `num_workers` is checked and
accepted, and only changes where torch would load (the batches are the same).
"""

from __future__ import annotations

import collections.abc
import copy
import itertools
import math
import re
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .compat import Namespace

_NUMPY_STRING_DTYPE = re.compile(r"[SaUO]")
COLLATE_ERROR = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts or "
                 "lists; found {}")


# --- datasets ------------------------------------------------------------------------------------


class Dataset:
    """An abstract map-style dataset: subclasses define `__getitem__` (and usually `__len__`)."""

    def __getitem__(self, index: Any) -> Any:
        raise NotImplementedError("Subclasses of Dataset should implement __getitem__.")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


class TensorDataset(Dataset):
    """Dataset wrapping tensors: sample i is `tuple(t[i] for t in tensors)`.

    Args:
        *tensors: tensors with the same size of the first dimension.

    Raises:
        AssertionError: the first dimensions differ (torch's "Size mismatch between tensors").
    """

    def __init__(self, *tensors: Any):
        if any(tensors[0].size(0) != t.size(0) for t in tensors):
            raise AssertionError("Size mismatch between tensors")
        self.tensors = tensors

    def __getitem__(self, index: Any) -> tuple[Any, ...]:
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return int(self.tensors[0].size(0))


class ConcatDataset(Dataset):
    """The concatenation of map-style datasets (`dataset_a + dataset_b`)."""

    def __init__(self, datasets: Sequence[Any]):
        self.datasets = list(datasets)
        if not self.datasets:
            raise AssertionError("datasets should not be an empty iterable")
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx: int) -> Any:
        if idx < 0:
            if -idx > len(self):
                raise ValueError("absolute value of index should not exceed dataset length")
            idx = len(self) + idx
        i = next((k for k, size in enumerate(self.cumulative_sizes) if idx < size),
                 len(self.datasets))
        start = self.cumulative_sizes[i - 1] if i > 0 else 0
        return self.datasets[i][idx - start]


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset: Any, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices: list[int]) -> list[Any]:
        if callable(getattr(self.dataset, "__getitems__", None)):
            return self.dataset.__getitems__(  # type: ignore[no-any-return]
                [self.indices[idx] for idx in indices])
        return [self.dataset[self.indices[idx]] for idx in indices]

    def __len__(self) -> int:
        return len(self.indices)


def draw_seed(torch: Any, generator: Any, fetch: bool = True) -> int | None:
    """torch's `torch.empty((), dtype=torch.int64).random_(generator=generator).item()`: one
    64-bit draw from `generator` (the default generator when None).

    `zeros` stands for torch's `empty` (random_ overwrites the value; neither draws anything).
    A namespace without `Tensor.random_` has no torch-exact generator whose state the draw
    could advance, and then nothing is drawn and None is returned. `fetch=False` draws without
    reading the value (`.item()` costs a session a round trip) and returns None.
    """
    seed_tensor = torch.zeros((), dtype=torch.int64)
    if not hasattr(seed_tensor, "random_"):
        return None
    kwargs = {} if generator is None else {"generator": generator}
    drawn = seed_tensor.random_(**kwargs)
    return int(drawn.item()) if fetch else None


def _can_shuffle(torch: Any) -> bool:
    """Whether `torch` has what RandomSampler calls (checked before anything is drawn)."""
    return (hasattr(torch, "Generator") and hasattr(torch, "randperm")
            and hasattr(torch.zeros((), dtype=torch.int64), "random_"))


# --- samplers ------------------------------------------------------------------------------------


class Sampler:
    """Base class of index samplers: `__iter__` yields indices (or lists of them)."""

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source: Any):
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """A random order of the dataset's indices (torch's draws: see the module docstring).

    Subclassed per namespace by `namespace()`; `_torch` is the namespace.
    """

    _torch: Any

    def __init__(self, data_source: Any, replacement: bool = False,
                 num_samples: int | None = None, generator: Any = None):
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(self.replacement, bool):
            raise TypeError("replacement should be a boolean value, but got replacement="
                            f"{self.replacement}")
        if not isinstance(self.num_samples, int) or self.num_samples <= 0:
            raise ValueError("num_samples should be a positive integer value, but got "
                             f"num_samples={self.num_samples}")

    @property
    def num_samples(self) -> int:
        """The number of indices one pass yields (the dataset's length unless given)."""
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self) -> Iterator[int]:
        torch = self._torch
        n = len(self.data_source)
        if self.generator is None:
            seed = draw_seed(torch, None) if _can_shuffle(torch) else None
            if seed is None:
                raise NotImplementedError(
                    "RandomSampler: shuffling needs torch.Generator, torch.randperm and "
                    "Tensor.random_, which this gradserve namespace does not have")
            generator = torch.Generator()
            generator.manual_seed(seed)
        else:
            generator = self.generator
        if self.replacement:
            for _ in range(self.num_samples // 32):
                yield from torch.randint(high=n, size=(32,), dtype=torch.int64,
                                         generator=generator).tolist()
            yield from torch.randint(high=n, size=(self.num_samples % 32,), dtype=torch.int64,
                                     generator=generator).tolist()
        else:
            for _ in range(self.num_samples // n):
                yield from torch.randperm(n, generator=generator).tolist()
            yield from torch.randperm(n, generator=generator).tolist()[:self.num_samples % n]

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order: one `torch.randperm(len(indices))` per pass, from
    `generator` or the global one (as torch's).

    Subclassed per namespace by `namespace()`; `_torch` is the namespace.
    """

    _torch: Any

    def __init__(self, indices: Sequence[int], generator: Any = None):
        self.indices = indices
        self.generator = generator

    def __iter__(self) -> Iterator[Any]:
        for i in self._torch.randperm(len(self.indices), generator=self.generator).tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class BatchSampler(Sampler):
    """Lists of `batch_size` indices from `sampler` (the last one shorter unless `drop_last`).

    Raises:
        ValueError: batch_size is not a positive int, or drop_last not a bool (torch's texts).
    """

    def __init__(self, sampler: Any, batch_size: int, drop_last: bool):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError("batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:
        sampler_iter = iter(self.sampler)
        if self.drop_last:
            for full in zip(*[sampler_iter] * self.batch_size):
                yield [*full]
        else:
            batch = [*itertools.islice(sampler_iter, self.batch_size)]
            while batch:
                yield batch
                batch = [*itertools.islice(sampler_iter, self.batch_size)]

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size


# --- collation -----------------------------------------------------------------------------------


def _is_numpy(value: Any) -> bool:
    t = type(value)
    return t.__module__ == "numpy" and t.__name__ not in ("str_", "string_")


def _as_tensor(torch: Any, data: Any) -> Any:
    """torch.as_tensor(data) for numpy data; `tensor` (a copy, the same values) in a namespace
    without as_tensor (the engine before branch compat)."""
    as_tensor = getattr(torch, "as_tensor", None)
    return torch.tensor(data) if as_tensor is None else as_tensor(data)


def default_convert(torch: Any, data: Any) -> Any:
    """torch's default_convert: numpy arrays (also inside mappings and sequences) to tensors."""
    if isinstance(data, torch.Tensor):
        return data
    if _is_numpy(data):
        if type(data).__name__ == "ndarray" and _NUMPY_STRING_DTYPE.search(data.dtype.str):
            return data
        return _as_tensor(torch, data)
    if isinstance(data, collections.abc.Mapping):
        return _rebuild_mapping(data, {k: default_convert(torch, data[k]) for k in data})
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return type(data)(*(default_convert(torch, d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(torch, d) for d in data]  # torch's backwards compatibility
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        return _rebuild_sequence(data, [default_convert(torch, d) for d in data])
    return data


def default_collate(torch: Any, batch: Sequence[Any]) -> Any:
    """torch's default_collate: a list of samples into a batch.

    Tensors are stacked along a new first dim; numpy arrays become tensors and are stacked;
    floats make a float64 tensor, ints (and bools) `torch.tensor(batch)`; str and bytes stay a
    list; mappings, namedtuples and sequences are collated field by field (a tuple sample gives
    a list, as in torch).

    Raises:
        RuntimeError: the sequences in the batch differ in length (torch's text).
        TypeError: an element of a type torch cannot collate (torch's text).
    """
    elem = batch[0]
    if isinstance(elem, torch.Tensor):
        return torch.stack(list(batch), 0)
    if isinstance(elem, np.ndarray):
        if _NUMPY_STRING_DTYPE.search(elem.dtype.str):
            raise TypeError(COLLATE_ERROR.format(elem.dtype))
        return default_collate(torch, [_as_tensor(torch, b) for b in batch])
    if isinstance(elem, (np.bool_, np.number, np.object_)):
        return _as_tensor(torch, batch)
    if isinstance(elem, float):
        return torch.tensor(batch, dtype=torch.float64)
    if isinstance(elem, int):
        return torch.tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return _rebuild_mapping(elem, {k: default_collate(torch, [d[k] for d in batch])
                                       for k in elem})
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(torch, list(s)) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if not all(len(e) == size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        transposed = list(zip(*batch))  # tuples, as torch's (a str batch stays a tuple)
        collated = [default_collate(torch, s) for s in transposed]
        if isinstance(elem, tuple):
            return collated  # torch's backwards compatibility: a list
        return _rebuild_sequence(elem, collated)
    raise TypeError(COLLATE_ERROR.format(type(elem)))


def _rebuild_mapping(like: Any, items: dict[Any, Any]) -> Any:
    try:
        if isinstance(like, collections.abc.MutableMapping):
            clone = copy.copy(like)
            clone.update(items)
            return clone
        return type(like)(items)
    except TypeError:
        return items


def _rebuild_sequence(like: Any, items: list[Any]) -> Any:
    try:
        if isinstance(like, collections.abc.MutableSequence):
            clone = copy.copy(like)
            for i, v in enumerate(items):
                clone[i] = v
            return clone
        return type(like)(items)
    except TypeError:
        return items


# --- DataLoader ----------------------------------------------------------------------------------


class DataLoader:
    """torch.utils.data.DataLoader over a map-style dataset.

    Args:
        dataset: a map-style dataset (`__getitem__` and `__len__`).
        batch_size: samples per batch (None: no batching, each sample converted as it is).
        shuffle: a new random order each pass (RandomSampler); default sequential.
        sampler, batch_sampler: custom index samplers (exclusive with shuffle, and batch_sampler
            with batch_size/shuffle/sampler/drop_last, as in torch).
        num_workers: >= 0; accepted, but loading runs in this process.
        collate_fn: turns a list of samples into a batch (default_collate).
        drop_last: drop the last, smaller batch.
        generator: the generator RandomSampler and the base seed draw from.
        Others (pin_memory, timeout, worker_init_fn, prefetch_factor, persistent_workers, ...)
        are checked as torch checks them and otherwise have no effect here.

    Raises:
        ValueError: torch's texts for exclusive or invalid options.
    """

    _torch: Any  # the namespace, set by `namespace()`
    _sampler_type: type[RandomSampler]  # RandomSampler bound to it

    def __init__(self, dataset: Any, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Any = None, batch_sampler: Any = None, num_workers: int = 0,
                 collate_fn: Callable[[Any], Any] | None = None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn: Any = None,
                 multiprocessing_context: Any = None, generator: Any = None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 pin_memory_device: str = "", in_order: bool = True):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to "
                             "disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing."
                             "let num_workers > 0 to enable multiprocessing, otherwise set "
                             "prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.in_order = in_order
        self.persistent_workers = persistent_workers
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")
        if sampler is None:
            sampler = (self._random_sampler(dataset, generator=generator) if shuffle
                       else SequentialSampler(dataset))
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        if collate_fn is None:
            torch = self._torch
            collate_fn = ((lambda b: default_collate(torch, b)) if self._auto_collation
                          else (lambda d: default_convert(torch, d)))
        self.collate_fn = collate_fn

    def _random_sampler(self, dataset: Any, generator: Any) -> RandomSampler:
        return self._sampler_type(dataset, generator=generator)

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self) -> Any:
        return self.batch_sampler if self._auto_collation else self.sampler

    def __iter__(self) -> _SingleProcessDataLoaderIter:
        torch = self._torch
        # torch's _BaseDataLoaderIter draws its base seed when the pass starts, before the
        # sampler draws anything (that happens at the first batch)
        sampler_iter = iter(self._index_sampler)
        draw_seed(torch, self.generator, fetch=False)  # torch's base seed, for its workers
        return _SingleProcessDataLoaderIter(self._batches(sampler_iter), len(self))

    def _batches(self, sampler_iter: Iterator[Any]) -> Iterator[Any]:
        dataset, collate = self.dataset, self.collate_fn
        for index in sampler_iter:
            if not self._auto_collation:
                yield collate(dataset[index])
                continue
            getitems = getattr(dataset, "__getitems__", None)
            data = getitems(index) if getitems else [dataset[i] for i in index]
            yield collate(data)

    def __len__(self) -> int:
        return len(self._index_sampler)


class _SingleProcessDataLoaderIter:
    """One pass over a DataLoader, as torch's iterator of that name: `next(it)`, `len(it)`
    (the loader's length), and torch's AttributeError for the Python 2 `it.next()` that old
    tutorials call."""

    __module__ = "torch.utils.data.dataloader"  # its repr and errors name torch's class

    def __init__(self, batches: Iterator[Any], length: int):
        self._batches = batches
        self._length = length

    def __iter__(self) -> _SingleProcessDataLoaderIter:
        return self

    def __next__(self) -> Any:
        return next(self._batches)

    def __len__(self) -> int:
        return self._length


def random_split(torch: Any, dataset: Any, lengths: Sequence[int | float],
                 generator: Any = None) -> list[Subset]:
    """Split `dataset` into non-overlapping Subsets of the given lengths (or fractions summing
    to 1), by `torch.randperm(len(dataset), generator=generator)` (the default generator when
    None).

    Raises:
        ValueError: a fraction outside [0, 1], or lengths that do not sum to the dataset's length
            (torch's texts).
    """
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        subset_lengths: list[int] = []
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(f"Fraction at index {i} is not between 0 and 1")
            subset_lengths.append(math.floor(len(dataset) * frac))
        remainder = len(dataset) - sum(subset_lengths)
        for i in range(remainder):
            subset_lengths[i % len(subset_lengths)] += 1
        lengths = subset_lengths
        for i, length in enumerate(lengths):
            if length == 0:
                warnings.warn(f"Length of split at index {i} is 0. This might result in an "
                              "empty dataset.", UserWarning, stacklevel=2)
    if sum(lengths) != len(dataset):
        raise ValueError("Sum of input lengths does not equal the length of the input dataset!")
    kwargs = {} if generator is None else {"generator": generator}
    indices = torch.randperm(sum(lengths), **kwargs).tolist()
    return [Subset(dataset, indices[offset - int(length):offset])
            for offset, length in zip(itertools.accumulate(int(n) for n in lengths), lengths)]


def namespace(torch: Any) -> types.SimpleNamespace:
    """`torch.utils.data` for the torch-like namespace `torch` (the engine module or a Session).

    Args:
        torch: what the loader calls for tensors and random draws (`Tensor`, `stack`, `tensor`,
            `as_tensor`, `empty`, `Generator`, `randperm`, `randint`, `float64`, `int64`).

    Returns:
        A namespace with Dataset, TensorDataset, ConcatDataset, Subset, Sampler,
        SequentialSampler, RandomSampler, SubsetRandomSampler, BatchSampler, DataLoader,
        default_collate, default_convert, get_worker_info and random_split, and torch's
        submodules `dataset`, `sampler` and `dataloader` holding them.
    """
    bound = {"_torch": torch, "__module__": "torch.utils.data"}
    sampler = type("RandomSampler", (RandomSampler,), dict(bound, __doc__=RandomSampler.__doc__))
    subset_sampler = type("SubsetRandomSampler", (SubsetRandomSampler,),
                          dict(bound, __doc__=SubsetRandomSampler.__doc__))
    loader = type("DataLoader", (DataLoader,),
                  dict(bound, _sampler_type=sampler, __doc__=DataLoader.__doc__))

    def collate(batch: Sequence[Any]) -> Any:
        return default_collate(torch, batch)

    def convert(data: Any) -> Any:
        return default_convert(torch, data)

    def split(dataset: Any, lengths: Sequence[int | float], generator: Any = None) -> list[Subset]:
        return random_split(torch, dataset, lengths, generator)

    collate.__doc__, convert.__doc__, split.__doc__ = (
        default_collate.__doc__, default_convert.__doc__, random_split.__doc__)
    datasets = dict(Dataset=Dataset, TensorDataset=TensorDataset, ConcatDataset=ConcatDataset,
                    Subset=Subset, random_split=split)
    samplers = dict(Sampler=Sampler, SequentialSampler=SequentialSampler, RandomSampler=sampler,
                    SubsetRandomSampler=subset_sampler, BatchSampler=BatchSampler)
    loading = dict(DataLoader=loader, default_collate=collate, default_convert=convert,
                   get_worker_info=get_worker_info)
    # torch's submodules, which programs import from (`from torch.utils.data.dataloader import
    # DataLoader`)
    return types.SimpleNamespace(
        **datasets, **samplers, **loading,
        dataset=Namespace("torch.utils.data.dataset", **datasets),
        sampler=Namespace("torch.utils.data.sampler", **samplers),
        dataloader=Namespace("torch.utils.data.dataloader", **loading))


def get_worker_info() -> None:
    """torch.utils.data.get_worker_info: None, as in torch's main process (loading always runs
    in the calling process)."""
    return None
