"""Reviews and ratings from verified buyers: moderation, helpful votes, reports, the shop's
public response, and each product's rating aggregate kept current in the same transaction."""
