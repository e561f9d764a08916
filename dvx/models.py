"""pydantic models: the validators of record for pointer files and configuration.

Imported lazily (pydantic costs ~70 ms to import): ``dvx.validcache`` remembers which
exact bytes these models already accepted, so unchanged pointers and configs are not
re-validated on every command. Validation results for given bytes never change, so the
memo is exact, not an approximation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dvx.chunking import params
from dvx.chunking.params import make_cut_params
from dvx.hashing import is_hex_id


class PointerModel(BaseModel):
    """A pointer file (protocols/format.md §6)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dvx: int = Field(description="pointer format version")
    kind: Literal["file", "tree"]
    id: str = Field(description="manifest id (file) or tree id (tree), 64 lowercase hex")
    size: int = Field(ge=0)
    files: int = Field(ge=0)
    b3: str | None = Field(default=None, description="plain BLAKE3 of the file (files only)")
    exec: bool = False

    @field_validator("id", "b3")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and not is_hex_id(v):
            raise ValueError("must be 64 lowercase hex digits")
        return v

    @model_validator(mode="after")
    def _kind_rules(self) -> PointerModel:
        if self.kind == "file" and (self.files != 1 or self.b3 is None):
            raise ValueError("a file pointer needs 'files: 1' and a 'b3' digest")
        if self.kind == "tree" and (self.b3 is not None or self.exec):
            raise ValueError("a tree pointer has no 'b3' or 'exec' field")
        return self


class ChunkerModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: Literal["fastcdc2020"] = "fastcdc2020"
    min_size: int = params.DEFAULT_MIN_SIZE
    avg_size: int = params.DEFAULT_AVG_SIZE
    max_size: int = params.DEFAULT_MAX_SIZE
    normalization: int = params.DEFAULT_NORMALIZATION
    seed: int = params.DEFAULT_SEED

    @model_validator(mode="after")
    def _valid(self) -> ChunkerModel:
        make_cut_params(self.min_size, self.avg_size, self.max_size, self.normalization, self.seed)
        return self


class CoreModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = 1
    extensions: tuple[str, ...] = ()
    default_remote: str | None = None
    fsync: bool = True
    direct_io: bool = True
    autostage: bool = False


class GcModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reflog_expire_days: int = Field(default=90, ge=0)


class RemoteModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    url: str = Field(min_length=1)
    options: dict[str, str] = Field(default_factory=dict)


class ConfigModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    core: CoreModel = CoreModel()
    chunker: ChunkerModel = ChunkerModel()
    remotes: dict[str, RemoteModel] = Field(default_factory=dict)
    gc: GcModel = GcModel()
