"""The reviews module's public face: what other modules and the adapters call.

The rules live in files by family: a customer's own review (:mod:`.writing`), helpful votes
and reports (:mod:`.feedback`), staff decisions and answers (:mod:`.moderation`), the abuse
filter (:mod:`.abuse`), each product's figures (:mod:`.ratings`) and reading
(:mod:`.queries`). Everything takes the caller's unit of work first.

Whether a customer received a product is the fulfilment module's knowledge, and fulfilment
sits above this module (the search index, below fulfilment, reads ratings from here):
``modules.wire`` registers its answer in :data:`purchase_checks`.
"""

from __future__ import annotations

from mercato.reviews.abuse import FLAGS, AbusePolicy, has_link, text_hash
from mercato.reviews.common import (
    AUTO_APPROVE_STAR_ONLY,
    MAX_BODY,
    MAX_NOTE,
    MAX_PAGE,
    MAX_REASON,
    MAX_RESPONSE,
    MAX_TITLE,
    RATINGS,
    REPORTS,
    REVIEWS,
    VOTES,
    PurchaseCheck,
    ReportReason,
    ReviewInfo,
    State,
    auto_approve_star_only,
    purchase_checks,
    received,
    set_auto_approve_star_only,
)
from mercato.reviews.feedback import ReportInfo, report_review, vote_helpful
from mercato.reviews.limits import throttle_customer
from mercato.reviews.models import REPORT_REASONS, STATES
from mercato.reviews.moderation import Decision, moderate, respond
from mercato.reviews.queries import (
    SORTS,
    BuyerReview,
    ModerationQueue,
    ReviewPage,
    ReviewQuery,
    ReviewSection,
    Sort,
    StaffFilters,
    count_by_state,
    moderation_queue,
    product_reviews,
    review_section,
    reviews_by_buyers,
    staff_reviews,
)
from mercato.reviews.ratings import (
    NOT_RATED,
    PRODUCT_RATING_CHANGED,
    RatingSummary,
    rating,
    ratings,
)
from mercato.reviews.writing import (
    UNSET,
    ReviewChanges,
    ReviewDraft,
    Unset,
    can_review,
    create_review,
    delete_review,
    edit_review,
    get_review,
    own_review_of,
)

__all__ = [
    "AUTO_APPROVE_STAR_ONLY",
    "FLAGS",
    "MAX_BODY",
    "MAX_NOTE",
    "MAX_PAGE",
    "MAX_REASON",
    "MAX_RESPONSE",
    "MAX_TITLE",
    "NOT_RATED",
    "PRODUCT_RATING_CHANGED",
    "RATINGS",
    "REPORTS",
    "REPORT_REASONS",
    "REVIEWS",
    "SORTS",
    "STATES",
    "UNSET",
    "VOTES",
    "AbusePolicy",
    "BuyerReview",
    "Decision",
    "ModerationQueue",
    "PurchaseCheck",
    "RatingSummary",
    "ReportInfo",
    "ReportReason",
    "ReviewChanges",
    "ReviewDraft",
    "ReviewInfo",
    "ReviewPage",
    "ReviewQuery",
    "ReviewSection",
    "Sort",
    "StaffFilters",
    "State",
    "Unset",
    "auto_approve_star_only",
    "can_review",
    "count_by_state",
    "create_review",
    "delete_review",
    "edit_review",
    "get_review",
    "has_link",
    "moderate",
    "moderation_queue",
    "own_review_of",
    "product_reviews",
    "purchase_checks",
    "rating",
    "ratings",
    "received",
    "report_review",
    "respond",
    "review_section",
    "reviews_by_buyers",
    "set_auto_approve_star_only",
    "staff_reviews",
    "text_hash",
    "throttle_customer",
    "vote_helpful",
]
