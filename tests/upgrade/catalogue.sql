--
-- catalogue.sql: the catalogue of the quantum_flow extension as lines of text, one fact per
-- line, with OIDs normalised away (objects by name and signature, roles by name, the
-- extension's owner as "extension owner", access control lists sorted, a NULL ACL as the
-- default privileges it stands for), so that two databases whose extension catalogues are
-- equal print identically. scripts/test-upgrade.sh runs it (psql -X -q -At) in a database
-- upgraded in place and in a fresh install, and diffs the two.
--
-- Covered: every member of the extension (pg_depend deptype 'e') by description; the
-- extension (version, schema, requirements), its config tables (pg_extension_config_dump)
-- and its schema; functions (signature, result, arguments with defaults, kind, language,
-- SECURITY DEFINER, STRICT, volatility, parallel safety, cost, rows, settings, body, library,
-- ACL, owner, comment, and a hash of pg_get_functiondef); relations (kind, persistence,
-- options such as fillfactor, ACL, owner, row security, comment, view definitions, sequence
-- parameters); columns in attnum order (type with typmod, NOT NULL, default, identity,
-- generated, collation, storage, statistics target, options, ACL, comment); indexes;
-- constraints; triggers; rules; policies; event triggers; types; pg_init_privs of it all;
-- the roles quantum_flow_admin/worker/client (attributes, memberships) and what is granted to
-- them outside the extension.
--
SET search_path = pg_catalog;   -- every name of the extension's prints schema-qualified

-- the extension's members, and the relations whose columns, indexes and so on are its own
CREATE TEMP VIEW members AS
    SELECT d.classid, d.objid, d.objsubid
    FROM pg_depend AS d JOIN pg_extension AS e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
    WHERE e.extname = 'quantum_flow' AND d.deptype = 'e';
CREATE TEMP VIEW member_rels AS
    SELECT objid AS oid FROM pg_temp.members WHERE classid = 'pg_class'::regclass
    UNION
    SELECT t.typrelid FROM pg_type AS t JOIN pg_temp.members AS m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
    WHERE t.typrelid <> 0;
-- an access control list, sorted; NULL (no column privileges, no entry) as none
CREATE FUNCTION pg_temp.acl(aclitem[]) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN $1 IS NULL THEN 'none'
                ELSE '{' || coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest($1) AS a), '') || '}' END
$$;
-- an object's privileges: its ACL, or for NULL the default privileges of an object of that kind
-- and owner (what NULL means), so that an explicit default and NULL print alike
CREATE FUNCTION pg_temp.acl(aclitem[], "char", oid) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT pg_temp.acl(coalesce($1, acldefault($2, $3)))
$$;
CREATE FUNCTION pg_temp.owner(oid) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN $1 = (SELECT extowner FROM pg_extension WHERE extname = 'quantum_flow') THEN 'extension owner'
                ELSE coalesce((SELECT quote_ident(rolname) FROM pg_roles WHERE oid = $1), 'unknown role') END
$$;
CREATE FUNCTION pg_temp.oneline(text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT replace(replace($1, E'\\', E'\\\\'), E'\n', E'\\n')
$$;

-- the extension itself
SELECT format('extension %s version=%s schema=%s relocatable=%s owner_is_superuser=%s requires=%s comment=%L',
              e.extname, e.extversion, e.extnamespace::regnamespace, e.extrelocatable, r.rolsuper,
              (SELECT string_agg(x.extname, ',' ORDER BY x.extname)
               FROM pg_depend AS d JOIN pg_extension AS x ON x.oid = d.refobjid
               WHERE d.classid = 'pg_extension'::regclass AND d.objid = e.oid
                 AND d.refclassid = 'pg_extension'::regclass),
              obj_description(e.oid, 'pg_extension'))
FROM pg_extension AS e JOIN pg_roles AS r ON r.oid = e.extowner
WHERE e.extname = 'quantum_flow';

-- pg_extension_config_dump: extconfig as table names, with their conditions
SELECT format('config_dump %s condition=%L', c.rel::regclass, c.cond)
FROM pg_extension AS e, unnest(e.extconfig, e.extcondition) AS c(rel, cond)
WHERE e.extname = 'quantum_flow'
ORDER BY 1;

-- every member
SELECT 'member ' || pg_describe_object(classid, objid, objsubid) FROM pg_temp.members ORDER BY 1;

-- the extension's schema (and any member schema)
SELECT format('schema %I owner=%s acl=%s member=%s comment=%L', n.nspname, pg_temp.owner(n.nspowner),
              pg_temp.acl(n.nspacl, 'n', n.nspowner),
              n.oid IN (SELECT objid FROM pg_temp.members WHERE classid = 'pg_namespace'::regclass),
              obj_description(n.oid, 'pg_namespace'))
FROM pg_namespace AS n
WHERE n.oid = (SELECT extnamespace FROM pg_extension WHERE extname = 'quantum_flow')
   OR n.oid IN (SELECT objid FROM pg_temp.members WHERE classid = 'pg_namespace'::regclass)
ORDER BY 1;

-- functions
SELECT format('function %s kind=%s language=%s returns=%s arguments=%s security_definer=%s strict=%s '
              'leakproof=%s returns_set=%s volatility=%s parallel=%s cost=%s rows=%s support=%s config=%s '
              'source=%L library=%L acl=%s owner=%s comment=%L definition_md5=%s',
              p.oid::regprocedure, p.prokind, l.lanname, pg_get_function_result(p.oid),
              pg_get_function_arguments(p.oid), p.prosecdef, p.proisstrict, p.proleakproof, p.proretset,
              p.provolatile, p.proparallel, p.procost, p.prorows, p.prosupport, p.proconfig,
              pg_temp.oneline(p.prosrc), p.probin, pg_temp.acl(p.proacl, 'f', p.proowner), pg_temp.owner(p.proowner),
              obj_description(p.oid, 'pg_proc'),
              CASE WHEN p.prokind IN ('f', 'p') THEN md5(pg_get_functiondef(p.oid)) END)
FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
WHERE p.oid IN (SELECT objid FROM pg_temp.members WHERE classid = 'pg_proc'::regclass)
ORDER BY 1;

-- relations: tables, views, sequences, composite types
SELECT format('relation %s kind=%s persistence=%s options=%s acl=%s owner=%s row_security=%s/%s '
              'replica_identity=%s of_type=%s partition_key=%s comment=%L',
              c.oid::regclass, c.relkind, c.relpersistence, c.reloptions,
              pg_temp.acl(c.relacl, (CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::"char", c.relowner),
              pg_temp.owner(c.relowner), c.relrowsecurity, c.relforcerowsecurity, c.relreplident,
              nullif(c.reloftype, 0)::regtype, pg_get_partkeydef(c.oid), obj_description(c.oid, 'pg_class'))
FROM pg_class AS c
WHERE c.oid IN (SELECT oid FROM pg_temp.member_rels)
ORDER BY 1;
SELECT format('view %s definition=%L', c.oid::regclass, pg_temp.oneline(pg_get_viewdef(c.oid)))
FROM pg_class AS c
WHERE c.oid IN (SELECT oid FROM pg_temp.member_rels) AND c.relkind IN ('v', 'm')
ORDER BY 1;
SELECT format('sequence %s type=%s start=%s increment=%s min=%s max=%s cache=%s cycle=%s owned_by=%s',
              s.seqrelid::regclass, s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
              s.seqcache, s.seqcycle,
              (SELECT format('%s.%s', d.refobjid::regclass, a.attname)
               FROM pg_depend AS d JOIN pg_attribute AS a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
               WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
                 AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
FROM pg_sequence AS s
WHERE s.seqrelid IN (SELECT oid FROM pg_temp.member_rels)
   OR s.seqrelid IN (SELECT d.objid FROM pg_depend AS d
                     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                       AND d.refobjid IN (SELECT oid FROM pg_temp.member_rels) AND d.deptype IN ('a', 'i'))
ORDER BY 1;

-- columns, in attnum order (position counts the columns that are not dropped). This server
-- build stores an internal counter as the attribute option pg_attver on every column of every
-- relation, different in each database: left out.
SELECT format('column %s.%I position=%s type=%s not_null=%s default=%s identity=%s generated=%s '
              'collation=%s storage=%s compression=%s statistics=%s options=%s acl=%s comment=%L',
              c.oid::regclass, a.attname, row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
              format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
              a.attidentity, a.attgenerated, co.collname, a.attstorage, a.attcompression, a.attstattarget,
              (SELECT array_agg(o ORDER BY o) FROM unnest(a.attoptions) AS o WHERE o NOT LIKE 'pg_attver=%'),
              pg_temp.acl(a.attacl), col_description(c.oid, a.attnum))
FROM pg_class AS c
JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation AS co ON co.oid = a.attcollation
WHERE c.oid IN (SELECT oid FROM pg_temp.member_rels)
ORDER BY c.oid::regclass::text, a.attnum;

-- indexes
SELECT format('index %s definition=%s primary=%s unique=%s clustered=%s replica_identity=%s valid=%s comment=%L',
              i.indexrelid::regclass, pg_get_indexdef(i.indexrelid), i.indisprimary, i.indisunique,
              i.indisclustered, i.indisreplident, i.indisvalid, obj_description(i.indexrelid, 'pg_class'))
FROM pg_index AS i
WHERE i.indrelid IN (SELECT oid FROM pg_temp.member_rels)
ORDER BY 1;

-- constraints (of tables and of member domains)
SELECT format('constraint %s %I type=%s definition=%s deferrable=%s deferred=%s validated=%s comment=%L',
              CASE WHEN c.conrelid <> 0 THEN c.conrelid::regclass::text ELSE c.contypid::regtype::text END,
              c.conname, c.contype, pg_get_constraintdef(c.oid), c.condeferrable, c.condeferred,
              c.convalidated, obj_description(c.oid, 'pg_constraint'))
FROM pg_constraint AS c
WHERE c.conrelid IN (SELECT oid FROM pg_temp.member_rels)
   OR c.contypid IN (SELECT objid FROM pg_temp.members WHERE classid = 'pg_type'::regclass)
ORDER BY 1;

-- triggers (not the internal ones behind foreign keys, which the constraints show)
SELECT format('trigger %s %I definition=%s enabled=%s comment=%L', t.tgrelid::regclass, t.tgname,
              pg_get_triggerdef(t.oid), t.tgenabled, obj_description(t.oid, 'pg_trigger'))
FROM pg_trigger AS t
WHERE NOT t.tgisinternal AND t.tgrelid IN (SELECT oid FROM pg_temp.member_rels)
ORDER BY 1;

-- rules and row security policies
SELECT format('rule %s %I definition=%s', r.ev_class::regclass, r.rulename, pg_temp.oneline(pg_get_ruledef(r.oid)))
FROM pg_rewrite AS r
WHERE r.ev_class IN (SELECT oid FROM pg_temp.member_rels) AND r.rulename <> '_RETURN'
ORDER BY 1;
SELECT format('policy %s %I command=%s permissive=%s roles=%s using=%s check=%s', p.polrelid::regclass,
              p.polname, p.polcmd, p.polpermissive,
              (SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END, ',' ORDER BY 1)
               FROM unnest(p.polroles) AS r),
              pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
FROM pg_policy AS p
WHERE p.polrelid IN (SELECT oid FROM pg_temp.member_rels)
ORDER BY 1;

-- event triggers
SELECT format('event_trigger %I event=%s tags=%s function=%s enabled=%s owner=%s comment=%L', e.evtname,
              e.evtevent, e.evttags, e.evtfoid::regprocedure, e.evtenabled, pg_temp.owner(e.evtowner),
              obj_description(e.oid, 'pg_event_trigger'))
FROM pg_event_trigger AS e
WHERE e.oid IN (SELECT objid FROM pg_temp.members WHERE classid = 'pg_event_trigger'::regclass)
ORDER BY 1;

-- types (enums with their labels, domains with their base type)
SELECT format('type %s type=%s category=%s labels=%s base=%s not_null=%s default=%s acl=%s owner=%s comment=%L',
              t.oid::regtype, t.typtype, t.typcategory,
              (SELECT string_agg(quote_literal(en.enumlabel), ',' ORDER BY en.enumsortorder)
               FROM pg_enum AS en WHERE en.enumtypid = t.oid),
              nullif(t.typbasetype, 0)::regtype, t.typnotnull, t.typdefault, pg_temp.acl(t.typacl, 'T', t.typowner),
              pg_temp.owner(t.typowner), obj_description(t.oid, 'pg_type'))
FROM pg_type AS t
WHERE t.oid IN (SELECT objid FROM pg_temp.members WHERE classid = 'pg_type'::regclass)
ORDER BY 1;

-- pg_init_privs: the privileges pg_dump treats as the extension's own
SELECT format('init_privs %s type=%s privileges=%s', pg_describe_object(ip.classoid, ip.objoid, ip.objsubid),
              ip.privtype, pg_temp.acl(ip.initprivs))
FROM pg_init_privs AS ip
WHERE (ip.classoid, ip.objoid) IN (SELECT classid, objid FROM pg_temp.members)
   OR (ip.classoid = 'pg_class'::regclass AND ip.objoid IN (SELECT oid FROM pg_temp.member_rels))
   OR (ip.classoid = 'pg_namespace'::regclass
       AND ip.objoid = (SELECT extnamespace FROM pg_extension WHERE extname = 'quantum_flow'))
ORDER BY 1;

-- the roles: attributes, memberships, and what they hold outside the extension (default
-- privileges too)
SELECT format('role %I superuser=%s inherit=%s create_role=%s create_db=%s login=%s replication=%s '
              'bypass_rls=%s connection_limit=%s valid_until=%s config=%s comment=%L',
              r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
              r.rolreplication, r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil, r.rolconfig,
              shobj_description(r.oid, 'pg_authid'))
FROM pg_roles AS r
WHERE r.rolname IN ('quantum_flow_admin', 'quantum_flow_worker', 'quantum_flow_client')
ORDER BY 1;
SELECT format('role_membership %s is a member of %s admin_option=%s grantor=%s', m.member::regrole,
              m.roleid::regrole, m.admin_option, m.grantor::regrole)
FROM pg_auth_members AS m
WHERE m.roleid::regrole::text IN ('quantum_flow_admin', 'quantum_flow_worker', 'quantum_flow_client')
   OR m.member::regrole::text IN ('quantum_flow_admin', 'quantum_flow_worker', 'quantum_flow_client')
ORDER BY 1;
WITH grants AS (
    SELECT format('table %s', c.oid::regclass) AS object, c.relacl AS acl FROM pg_class AS c
    WHERE c.relacl IS NOT NULL AND c.oid NOT IN (SELECT oid FROM pg_temp.member_rels)
    UNION ALL
    SELECT format('function %s', p.oid::regprocedure), p.proacl FROM pg_proc AS p
    WHERE p.proacl IS NOT NULL
      AND p.oid NOT IN (SELECT objid FROM pg_temp.members WHERE classid = 'pg_proc'::regclass)
    UNION ALL
    SELECT format('schema %I', n.nspname), n.nspacl FROM pg_namespace AS n
    WHERE n.nspacl IS NOT NULL
      AND n.oid <> (SELECT extnamespace FROM pg_extension WHERE extname = 'quantum_flow')
    UNION ALL
    SELECT format('type %s', t.oid::regtype), t.typacl FROM pg_type AS t WHERE t.typacl IS NOT NULL
    UNION ALL
    SELECT 'the current database', d.datacl FROM pg_database AS d
    WHERE d.datname = current_database() AND d.datacl IS NOT NULL
)
SELECT format('role_grant %s on %s to %s with_grant_option=%s', x.privilege_type, g.object,
              x.grantee::regrole, x.is_grantable)
FROM grants AS g, aclexplode(g.acl) AS x
WHERE x.grantee <> 0
  AND x.grantee::regrole::text IN ('quantum_flow_admin', 'quantum_flow_worker', 'quantum_flow_client')
ORDER BY 1;
SELECT format('default_acl role=%s schema=%s type=%s acl=%s', d.defaclrole::regrole,
              nullif(d.defaclnamespace, 0)::regnamespace, d.defaclobjtype, pg_temp.acl(d.defaclacl))
FROM pg_default_acl AS d
WHERE d.defaclnamespace = (SELECT extnamespace FROM pg_extension WHERE extname = 'quantum_flow')
   OR d.defaclrole::regrole::text IN ('quantum_flow_admin', 'quantum_flow_worker', 'quantum_flow_client')
   OR EXISTS (SELECT 1 FROM aclexplode(d.defaclacl) AS x
              WHERE x.grantee <> 0
                AND x.grantee::regrole::text IN ('quantum_flow_admin', 'quantum_flow_worker', 'quantum_flow_client'))
ORDER BY 1;
