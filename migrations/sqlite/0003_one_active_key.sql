-- At most one signing key per algorithm is active, and at most one is next: replicas that
-- start or rotate at the same moment cannot create a second one.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys(alg) WHERE state = 'active';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys(alg) WHERE state = 'next';
