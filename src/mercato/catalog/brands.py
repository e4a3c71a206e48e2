"""Brands: a name and a slug, for product pages and the brand filter."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from mercato import events
from mercato.catalog.common import flush_or_conflict, slug_in_use, slug_taken, slugify
from mercato.catalog.models import Brand
from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id


@dataclass(frozen=True, slots=True)
class BrandInfo:
    id: str
    name: str
    slug: str


def brand_info(b: Brand) -> BrandInfo:
    return BrandInfo(b.id, b.name, b.slug)


async def create_brand(uow: UnitOfWork, *, name: str, slug: str | None = None) -> BrandInfo:
    slug = slug or slugify(name)
    if await slug_in_use(uow, Brand, slug):
        raise slug_taken("slug", slug)
    brand = Brand(id=new_id("brd"), name=name, slug=slug, created_at=utcnow())
    uow.add(brand)
    await flush_or_conflict(uow, slug_taken("slug", slug))
    await events.publish(
        uow, "BrandCreated", brand.id, {"brand_id": brand.id, "slug": slug, "name": name}
    )
    return brand_info(brand)


async def list_brands(uow: UnitOfWork) -> list[BrandInfo]:
    brands = (await uow.scalars(select(Brand).order_by(Brand.name, Brand.id))).all()
    return [brand_info(b) for b in brands]


async def get_brand_by_slug(uow: UnitOfWork, slug: str) -> BrandInfo | None:
    brand = await uow.scalar(select(Brand).where(Brand.slug == slug))
    return brand_info(brand) if brand else None
