DROP INDEX IF EXISTS templates_routing;
