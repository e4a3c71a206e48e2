"""The category tree: each category knows its materialised path (``home/kitchen/kettles``),
so a subtree is one prefix match and a move rewrites the paths below it."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import or_, select

from mercato import events
from mercato.catalog.common import (
    MAX_PATH_LENGTH,
    UNSET,
    _Unset,
    flush_or_conflict,
    slug_in_use,
    slug_taken,
    slugify,
    unknown_category,
)
from mercato.catalog.models import Category, Product
from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.problems import not_found, validation_problem


@dataclass(frozen=True, slots=True)
class CategoryInfo:
    id: str
    parent_id: str | None
    name: str
    slug: str
    path: str
    depth: int
    position: int


@dataclass(slots=True)
class CategoryNode:
    category: CategoryInfo
    children: list[CategoryNode] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CategoryChanges:
    name: str | _Unset = UNSET
    slug: str | _Unset = UNSET
    parent_id: str | _Unset | None = UNSET
    position: int | _Unset = UNSET


def category_info(c: Category) -> CategoryInfo:
    return CategoryInfo(c.id, c.parent_id, c.name, c.slug, c.path, c.depth, c.position)


async def create_category(
    uow: UnitOfWork,
    *,
    name: str,
    slug: str | None = None,
    parent_id: str | None = None,
    position: int = 0,
) -> CategoryInfo:
    slug = slug or slugify(name)
    parent: Category | None = None
    if parent_id is not None:
        parent = await uow.get(Category, parent_id)
        if parent is None:
            raise unknown_category("parent_id", parent_id)
    if await slug_in_use(uow, Category, slug):
        raise slug_taken("slug", slug)
    path = f"{parent.path}/{slug}" if parent else slug
    if len(path) > MAX_PATH_LENGTH:
        raise validation_problem("slug", "the category is nested too deeply")
    now = utcnow()
    category = Category(
        id=new_id("cat"),
        parent_id=parent.id if parent else None,
        name=name,
        slug=slug,
        path=path,
        depth=parent.depth + 1 if parent else 0,
        position=position,
        created_at=now,
        updated_at=now,
    )
    uow.add(category)
    await flush_or_conflict(uow, slug_taken("slug", slug))
    await events.publish(
        uow,
        "CategoryCreated",
        category.id,
        {"category_id": category.id, "slug": slug, "path": path, "parent_id": category.parent_id},
    )
    return category_info(category)


async def update_category(
    uow: UnitOfWork, category_id: str, changes: CategoryChanges
) -> CategoryInfo:
    category = await uow.get(Category, category_id)
    if category is None:
        raise not_found("Category", category_id)
    changed: list[str] = []
    if not isinstance(changes.name, _Unset) and changes.name != category.name:
        category.name = changes.name
        changed.append("name")
    if not isinstance(changes.position, _Unset) and changes.position != category.position:
        category.position = changes.position
        changed.append("position")
    new_slug = category.slug if isinstance(changes.slug, _Unset) else changes.slug
    new_parent_id = (
        category.parent_id if isinstance(changes.parent_id, _Unset) else changes.parent_id
    )
    if new_slug != category.slug:
        if await slug_in_use(uow, Category, new_slug):
            raise slug_taken("slug", new_slug)
        changed.append("slug")
    if new_parent_id != category.parent_id:
        changed.append("parent_id")
    if new_slug != category.slug or new_parent_id != category.parent_id:
        await _move_category(uow, category, new_slug, new_parent_id)
    if changed:
        category.updated_at = utcnow()
        await flush_or_conflict(uow, slug_taken("slug", new_slug))
        await events.publish(
            uow,
            "CategoryUpdated",
            category.id,
            {
                "category_id": category.id,
                "slug": category.slug,
                "path": category.path,
                "parent_id": category.parent_id,
                "fields": changed,
            },
        )
    return category_info(category)


async def _move_category(
    uow: UnitOfWork, category: Category, slug: str, parent_id: str | None
) -> None:
    """Re-slug and/or re-parent a category, rewriting the paths of its whole subtree."""
    parent: Category | None = None
    if parent_id is not None:
        parent = await uow.get(Category, parent_id)
        if parent is None:
            raise unknown_category("parent_id", parent_id)
        if parent.id == category.id or parent.path.startswith(category.path + "/"):
            raise validation_problem(
                "parent_id", "a category cannot move under itself", code="invalid_parent"
            )
    old_path, old_depth = category.path, category.depth
    new_path = f"{parent.path}/{slug}" if parent else slug
    new_depth = parent.depth + 1 if parent else 0
    subtree = (
        await uow.scalars(
            select(Category).where(Category.path.startswith(old_path + "/", autoescape=True))
        )
    ).all()
    longest = max([len(new_path)] + [len(new_path) + len(c.path) - len(old_path) for c in subtree])
    if longest > MAX_PATH_LENGTH:
        raise validation_problem("parent_id", "the category tree would be nested too deeply")
    now = utcnow()
    old_paths = [node.path for node in subtree]
    # Paths are unique: park the subtree on temporary paths first so that the UPDATEs can never
    # collide with each other halfway through a move.
    for node in [category, *subtree]:
        node.path = f"~{node.id}"
    await uow.flush()
    category.slug, category.parent_id = slug, parent_id
    category.path, category.depth = new_path, new_depth
    for node, old in zip(subtree, old_paths, strict=True):
        node.path = new_path + old[len(old_path) :]
        node.depth = node.depth - old_depth + new_depth
        node.updated_at = now


async def get_category_tree(uow: UnitOfWork) -> list[CategoryNode]:
    categories = (
        await uow.scalars(
            select(Category).order_by(Category.depth, Category.position, Category.name)
        )
    ).all()
    nodes = {c.id: CategoryNode(category_info(c)) for c in categories}
    roots: list[CategoryNode] = []
    for c in categories:
        node = nodes[c.id]
        if c.parent_id is not None and c.parent_id in nodes:
            nodes[c.parent_id].children.append(node)
        else:
            roots.append(node)
    return roots


async def get_category_by_slug(uow: UnitOfWork, slug: str) -> CategoryInfo | None:
    category = await uow.scalar(select(Category).where(Category.slug == slug))
    return category_info(category) if category else None


async def get_category_subtree(
    uow: UnitOfWork, slug: str
) -> tuple[CategoryNode, list[CategoryInfo]] | None:
    """A category with its descendants, and its ancestors from the root (a breadcrumb)."""
    category = await uow.scalar(select(Category).where(Category.slug == slug))
    if category is None:
        return None
    below = (
        await uow.scalars(
            select(Category)
            .where(Category.path.startswith(category.path + "/", autoescape=True))
            .order_by(Category.depth, Category.position, Category.name)
        )
    ).all()
    nodes = {category.id: CategoryNode(category_info(category))}
    for c in below:
        nodes[c.id] = CategoryNode(category_info(c))
        if c.parent_id in nodes:
            nodes[c.parent_id].children.append(nodes[c.id])
    ancestor_paths = []
    parts = category.path.split("/")
    for i in range(1, len(parts)):
        ancestor_paths.append("/".join(parts[:i]))
    ancestors = (
        (await uow.scalars(select(Category).where(Category.path.in_(ancestor_paths)))).all()
        if ancestor_paths
        else []
    )
    breadcrumb = sorted((category_info(a) for a in ancestors), key=lambda c: c.depth)
    return nodes[category.id], breadcrumb


# --------------------------------------------------------------------------------------------
# For projections (the search index)


async def product_ids_in_category_tree(uow: UnitOfWork, category_id: str) -> list[str]:
    """Ids of every product (any status) in a category or below it."""
    category = await uow.get(Category, category_id)
    if category is None:
        return []
    subtree = select(Category.id).where(
        or_(
            Category.path == category.path,
            Category.path.startswith(category.path + "/", autoescape=True),
        )
    )
    return list(
        (await uow.scalars(select(Product.id).where(Product.category_id.in_(subtree)))).all()
    )


async def category_names_by_path(uow: UnitOfWork) -> dict[str, str]:
    """Every category's name keyed by its path, to name a product's ancestors in one lookup."""
    rows = await uow.execute(select(Category.path, Category.name))
    return {path: name for path, name in rows}
