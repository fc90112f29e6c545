"""One sparse voxel store in map_frame, allocated in blocks (nvblox's layout).

Voxel (i, j, k) of the lattice covers `origin + [i, i + 1) * voxel_size` per axis. Voxels
live in blocks of `B x B x B`; a block is allocated when a frame first observes one of its
voxels. Blocks are found through a sorted table of int64 block keys (21 bits per axis), so
every operation is a handful of vectorised numpy calls whatever the map's size. A voxel's
*address* is `block slot * B**3 + local index`; every per-voxel layer is an array indexed by
address, i.e. a view of the same store:

- occupancy: `log_odds` float32 and `updates` uint16 (times observed; 0 = unknown);
- language: `feature_row` int32 into a dense pool of running-mean features, stored as
  bfloat16 (2 bytes per channel, like fp16, but converted and multiplied by the CPU's
  native bf16 instructions: a query over 100k voxels reads the pool once), with the mean's
  weight, its norm, the owning address and its centre per row. The pool stays dense (a
  released row is filled with the last one), so a query multiplies exactly the live rows.

State per voxel: `VOXEL_BYTES` = 10 bytes; per voxel with a language feature another
`feature_bytes(D)` = 2 D + 28 bytes (1052 bytes for D = 512).
"""

from __future__ import annotations

import numpy as np

VOXEL_BYTES = 4 + 2 + 4  # log_odds float32, updates uint16, feature_row int32
_BITS = 21
_OFFSET = 1 << (_BITS - 1)
_MASK = (1 << _BITS) - 1
MAX_BLOCK_COORD = _OFFSET - 1  # |block coordinate| must stay below this
UPDATES_MAX = np.iinfo(np.uint16).max


def feature_bytes(dim: int) -> int:
    """Bytes of one language feature row: bf16 channels, weight and norm (float32), owner
    address (int64), the owner's centre (3 float32, so a query never recomputes it)."""
    return 2 * int(dim) + 4 + 4 + 8 + 12


def pack_blocks(coords: np.ndarray) -> np.ndarray:
    """int64 keys of integer block coordinates (N, 3); order of keys = lexicographic (x, y, z)."""
    c = np.asarray(coords, np.int64) + _OFFSET
    return (c[:, 0] << (2 * _BITS)) | (c[:, 1] << _BITS) | c[:, 2]


def unpack_blocks(keys: np.ndarray) -> np.ndarray:
    """Block coordinates (N, 3) int64 of keys made by `pack_blocks`."""
    k = np.asarray(keys, np.int64)
    return np.stack([(k >> (2 * _BITS)) & _MASK, (k >> _BITS) & _MASK, k & _MASK], 1) - _OFFSET


def bf16_bits(x) -> np.ndarray:
    """uint16 bfloat16 bit patterns of float values (round to nearest even)."""
    import torch

    t = torch.as_tensor(np.ascontiguousarray(x, np.float32)).to(torch.bfloat16)
    return t.view(torch.int16).numpy().view(np.uint16)


def bf16_to_float(bits: np.ndarray) -> np.ndarray:
    """float32 values of uint16 bfloat16 bit patterns (exact)."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def bf16_tensor(bits: np.ndarray):
    """A torch.bfloat16 view (no copy) of a C-contiguous uint16 array."""
    import torch

    return torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16)


class VoxelStore:
    """Block-allocated voxels with an occupancy and a language layer (module docstring)."""

    def __init__(self, voxel_size, origin, block_size: int = 8, feature_dim: int = 0):
        self.voxel_size = np.broadcast_to(np.asarray(voxel_size, np.float64), (3,)).copy()
        self.origin = np.broadcast_to(np.asarray(origin, np.float64), (3,)).copy()
        self.block_size = int(block_size)
        self.block_voxels = self.block_size**3
        self.feature_dim = int(feature_dim)
        self.clear()

    # -- whole store ---------------------------------------------------------------------
    def clear(self) -> None:
        """Forget everything (keeps the lattice and the feature width)."""
        bv = self.block_voxels
        self._table_keys = np.zeros(0, np.int64)  # sorted block keys
        self._table_slots = np.zeros(0, np.int64)  # slot of each key
        self.block_coords = np.zeros((0, 3), np.int64)
        self.block_used = np.zeros(0, bool)
        self.log_odds = np.zeros((0, bv), np.float32)
        self.updates = np.zeros((0, bv), np.uint16)
        self.feature_row = np.full((0, bv), -1, np.int32)
        self._free: list[int] = []
        self.features = np.zeros((0, self.feature_dim), np.uint16)  # bf16 bits
        self.feature_weight = np.zeros(0, np.float32)
        self.feature_norm = np.zeros(0, np.float32)
        self.feature_owner = np.zeros(0, np.int64)
        self.feature_centre = np.zeros((0, 3), np.float32)
        self.num_features = 0

    def set_feature_dim(self, dim: int) -> None:
        """Set the language feature width of a store that holds no feature yet."""
        if self.num_features:
            raise ValueError("the store holds features of another width")
        self.feature_dim = int(dim)
        self.features = np.zeros((0, self.feature_dim), np.uint16)
        self.feature_weight = np.zeros(0, np.float32)
        self.feature_norm = np.zeros(0, np.float32)
        self.feature_owner = np.zeros(0, np.int64)
        self.feature_centre = np.zeros((0, 3), np.float32)

    @property
    def num_blocks(self) -> int:
        return int(self._table_keys.size)

    @property
    def num_voxels(self) -> int:
        """Stored (allocated) voxels: blocks x voxels per block."""
        return self.num_blocks * self.block_voxels

    def nbytes(self) -> int:
        """Bytes of state in use: stored voxels, live feature rows and the block table."""
        per_block = self.block_voxels * VOXEL_BYTES + 3 * 8 + 8 + 8 + 1
        return self.num_blocks * per_block + self.num_features * feature_bytes(self.feature_dim)

    # -- lattice -------------------------------------------------------------------------
    def voxel_index(self, points) -> np.ndarray:
        """Integer voxel indices (N, 3) int64 of map-frame points (N, 3)."""
        p = np.asarray(points, np.float64).reshape(-1, 3)
        return np.floor((p - self.origin) / self.voxel_size).astype(np.int64)

    def voxel_centres(self, index) -> np.ndarray:
        """Map-frame centres (N, 3) float64 of voxel indices (N, 3)."""
        return self.origin + (np.asarray(index, np.float64) + 0.5) * self.voxel_size

    def _split(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(index, np.int64).reshape(-1, 3)
        blocks = np.floor_divide(idx, self.block_size)
        if blocks.size and np.abs(blocks).max() > MAX_BLOCK_COORD:
            raise ValueError("voxel index beyond the map's addressable range")
        rel = idx - blocks * self.block_size
        b = self.block_size
        return blocks, (rel[:, 0] * b + rel[:, 1]) * b + rel[:, 2]

    def address_index(self, address) -> np.ndarray:
        """Voxel indices (N, 3) int64 of addresses."""
        a = np.asarray(address, np.int64)
        slot, local = np.divmod(a, self.block_voxels)
        b = self.block_size
        rel = np.stack([local // (b * b), (local // b) % b, local % b], 1)
        return self.block_coords[slot] * b + rel

    # -- addressing ----------------------------------------------------------------------
    def find(self, index) -> np.ndarray:
        """Addresses (N,) int64 of voxel indices (N, 3); -1 where the block is not stored."""
        blocks, local = self._split(index)
        keys = pack_blocks(blocks)
        slot = self._lookup(keys)
        return np.where(slot >= 0, slot * self.block_voxels + local, -1)

    def _lookup(self, keys: np.ndarray) -> np.ndarray:
        if self._table_keys.size == 0:
            return np.full(keys.shape, -1, np.int64)
        pos = np.searchsorted(self._table_keys, keys)
        pos_c = np.minimum(pos, self._table_keys.size - 1)
        hit = self._table_keys[pos_c] == keys
        return np.where(hit, self._table_slots[pos_c], -1)

    def ensure(self, index) -> np.ndarray:
        """Addresses (N,) int64 of voxel indices (N, 3), allocating the missing blocks."""
        blocks, local = self._split(index)
        keys = pack_blocks(blocks)
        ukeys, inverse = np.unique(keys, return_inverse=True)
        slots = self._lookup(ukeys)
        missing = np.flatnonzero(slots < 0)
        if missing.size:
            new_slots = self._allocate(missing.size)
            slots[missing] = new_slots
            self.block_coords[new_slots] = unpack_blocks(ukeys[missing])
            self._insert(ukeys[missing], new_slots)
        return slots[inverse.reshape(-1)] * self.block_voxels + local

    def _allocate(self, count: int) -> np.ndarray:
        if len(self._free) < count:
            old = self.block_used.size
            capacity = max(old + count - len(self._free), 2 * old, 16)
            self._grow(capacity)
            self._free.extend(range(capacity - 1, old - 1, -1))  # pop() hands out low slots first
        slots = np.asarray([self._free.pop() for _ in range(count)], np.int64)
        self.block_used[slots] = True
        return slots

    def _grow(self, capacity: int) -> None:
        old = self.block_used.size
        extra = capacity - old

        def grow(arr, fill):
            pad = np.full((extra, *arr.shape[1:]), fill, arr.dtype)
            return np.concatenate([arr, pad])

        self.block_coords = grow(self.block_coords, 0)
        self.block_used = grow(self.block_used, False)
        self.log_odds = grow(self.log_odds, 0.0)
        self.updates = grow(self.updates, 0)
        self.feature_row = grow(self.feature_row, -1)

    def _insert(self, keys: np.ndarray, slots: np.ndarray) -> None:
        order = np.argsort(keys)
        keys, slots = keys[order], slots[order]
        pos = np.searchsorted(self._table_keys, keys)
        self._table_keys = np.insert(self._table_keys, pos, keys)
        self._table_slots = np.insert(self._table_slots, pos, slots)

    # -- listing -------------------------------------------------------------------------
    def stored_slots(self) -> np.ndarray:
        """Slots of the stored blocks, in block-key order."""
        return self._table_slots.copy()

    def observed_addresses(self) -> np.ndarray:
        """Addresses of every voxel observed at least once, block-key order."""
        slots = self._table_slots
        if slots.size == 0:
            return np.zeros(0, np.int64)
        seen = self.updates[slots] > 0
        rows, local = np.nonzero(seen)
        return slots[rows] * self.block_voxels + local

    # -- eviction ------------------------------------------------------------------------
    def block_centres(self, slots) -> np.ndarray:
        """Map-frame centres (N, 3) of blocks by slot."""
        size = self.voxel_size * self.block_size
        return self.origin + (self.block_coords[np.asarray(slots, np.int64)] + 0.5) * size

    def evict(self, slots) -> None:
        """Drop whole blocks (their voxels and language features)."""
        slots = np.unique(np.asarray(slots, np.int64))
        if slots.size == 0:
            return
        rows = self.feature_row[slots]
        self.remove_features(rows[rows >= 0])
        self.log_odds[slots] = 0.0
        self.updates[slots] = 0
        self.feature_row[slots] = -1
        self.block_used[slots] = False
        keep = ~np.isin(self._table_slots, slots)
        self._table_keys = self._table_keys[keep]
        self._table_slots = self._table_slots[keep]
        self._free.extend(int(s) for s in slots[::-1])

    # -- language layer ------------------------------------------------------------------
    def add_feature_rows(self, addresses: np.ndarray) -> np.ndarray:
        """New zero-weight feature rows for voxels without one; returns every voxel's row."""
        flat_rows = self.feature_row.reshape(-1)
        rows = flat_rows[addresses].astype(np.int64)
        new = np.flatnonzero(rows < 0)
        if new.size:
            start = self.num_features
            end = start + new.size
            if end > self.features.shape[0]:
                self._grow_features(max(end, 2 * self.features.shape[0], 1024))
            fresh = np.arange(start, end, dtype=np.int64)
            rows[new] = fresh
            flat_rows[addresses[new]] = fresh
            self.feature_owner[fresh] = addresses[new]
            self.feature_centre[fresh] = self.voxel_centres(self.address_index(addresses[new]))
            self.feature_weight[fresh] = 0.0
            self.feature_norm[fresh] = 0.0
            self.num_features = end
        return rows

    def _grow_features(self, capacity: int) -> None:
        extra = capacity - self.features.shape[0]
        self.features = np.concatenate(
            [self.features, np.zeros((extra, self.feature_dim), np.uint16)]
        )
        self.feature_weight = np.concatenate([self.feature_weight, np.zeros(extra, np.float32)])
        self.feature_norm = np.concatenate([self.feature_norm, np.zeros(extra, np.float32)])
        self.feature_owner = np.concatenate([self.feature_owner, np.zeros(extra, np.int64)])
        self.feature_centre = np.concatenate(
            [self.feature_centre, np.zeros((extra, 3), np.float32)]
        )

    def fuse_features(self, addresses, features, weights, weight_max: float) -> None:
        """Confidence-weighted running mean: f <- (W f + w x) / (W + w), W <- min(W + w,
        weight_max), per voxel (addresses unique); features (N, D) float32, weights (N,) > 0."""
        import torch

        addresses = np.asarray(addresses, np.int64)
        if addresses.size == 0:
            return
        rows = self.add_feature_rows(addresses)
        w = np.asarray(weights, np.float32)
        big_w = self.feature_weight[rows]
        pool = bf16_tensor(self.features)
        rows_t = torch.from_numpy(rows)
        mean = pool.index_select(0, rows_t).float()
        # (W f + w x) / (W + w) = f + w / (W + w) * (x - f): one in-place lerp
        step = torch.from_numpy(w / (big_w + w))[:, None]
        mean.lerp_(torch.from_numpy(np.ascontiguousarray(features, np.float32)), step)
        stored = mean.to(torch.bfloat16)
        pool.index_copy_(0, rows_t, stored)
        self.feature_weight[rows] = np.minimum(big_w + w, weight_max)
        norm = torch.linalg.vector_norm(stored, dim=1, dtype=torch.float32)
        self.feature_norm[rows] = norm.numpy()

    def remove_features(self, rows) -> None:
        """Release feature rows; the pool stays dense (the last rows fill the holes)."""
        rows = np.unique(np.asarray(rows, np.int64))
        if rows.size == 0:
            return
        n = self.num_features
        new_n = n - rows.size
        self.feature_row.reshape(-1)[self.feature_owner[rows]] = -1
        holes = rows[rows < new_n]
        tail = np.setdiff1d(np.arange(new_n, n, dtype=np.int64), rows, assume_unique=True)
        if holes.size:
            self.features[holes] = self.features[tail]
            self.feature_weight[holes] = self.feature_weight[tail]
            self.feature_norm[holes] = self.feature_norm[tail]
            self.feature_owner[holes] = self.feature_owner[tail]
            self.feature_centre[holes] = self.feature_centre[tail]
            self.feature_row.reshape(-1)[self.feature_owner[holes]] = holes
        self.num_features = new_n

    def feature_values(self, rows) -> np.ndarray:
        """float32 (N, D) stored running means of feature rows."""
        return bf16_to_float(self.features[np.asarray(rows, np.int64)])
